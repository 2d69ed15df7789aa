"""The CIFAR-10 configs of the CMI paper's Table 1: the reference settings, valid without
training, and a smoke run end to end on the CIFAR-10 files."""

import pytest

from jaxinv import experiment_configs, pipeline

# pair -> (teacher, student, the paper's CMI and ADI accuracies)
PAPER = {"resnet34_resnet18": ("resnet34", "resnet18", 94.84, 93.26),
         "vgg11_resnet18": ("vgg11", "resnet18", 91.13, 90.36),
         "wrn40_2_wrn16_1": ("wrn40_2", "wrn16_1", 90.01, 83.04),
         "wrn40_2_wrn40_1": ("wrn40_2", "wrn40_1", 92.78, 86.85),
         "wrn40_2_wrn16_2": ("wrn40_2", "wrn16_2", 92.52, 89.72)}


@pytest.mark.parametrize("pair", sorted(PAPER))
def test_full_configs_hold_the_reference_settings(pair):
    teacher, student, cmi_accuracy, adi_accuracy = PAPER[pair]
    cmi = experiment_configs.load_config(f"cmi_cifar10.py:{pair}")
    adi = experiment_configs.load_config(f"cmi_cifar10.py:{pair}_adi")
    plain = experiment_configs.load_config(f"cmi_cifar10.py:{pair}_deepinversion")
    for config in (cmi, adi, plain):
        assert (config.teacher.model, config.distill.student) == (teacher, student)
        assert config.synthesis.num_per_class * 10 == 51200  # 200 rounds of 256
        assert config.synthesis.batch_size == 256 and config.synthesis.flip
        assert config.distill.temperature == 20.0 and config.distill.num_steps == 80000
        pipeline.check_config(config)
    assert cmi.synthesis.method == "cmi" and cmi.synthesis.num_steps == 200
    assert dict(cmi.synthesis.weights) == {"bn": 1.0, "cls": 1.0, "adv": 0.5,
                                           "contrastive": 0.8}
    assert (cmi.synthesis.bank_size, cmi.synthesis.num_negatives) == (40960, 4096)
    assert adi.synthesis.competition == 1.0 and plain.synthesis.competition == 0.0
    assert adi.synthesis.num_steps == plain.synthesis.num_steps == 1000
    assert pipeline._paper_figures(cmi)["cmi"] == cmi_accuracy
    assert pipeline._paper_figures(adi)["adi"] == adi_accuracy
    assert "deepinversion" not in pipeline._paper_figures(plain)


def test_unknown_config_names_the_valid_ones():
    with pytest.raises(ValueError, match="wrn40_2_wrn16_1"):
        experiment_configs.load_config("cmi_cifar10.py:wrn40_2_wrn16_3")


@pytest.mark.slow
def test_smoke_runs_end_to_end_on_the_cifar10_files(session_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    config = experiment_configs.load_config("cmi_cifar10.py:wrn40_2_wrn16_1_smoke")
    results = pipeline.run(config, str(tmp_path / "run"))
    assert results["method"] == "cmi" and results["num_transfer_images"] == 20
    assert 0.0 <= results["distill"]["student_test_accuracy"] <= 100.0
    assert "paper" not in results  # a BN CNN smoke run is not the paper's setting
