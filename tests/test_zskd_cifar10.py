"""The CIFAR-10 configs of Tables 3, 5 and 6: the paper's settings, valid without training, and a
smoke run end to end."""

import os

import pytest

from jaxinv import experiment_configs, pipeline

# (teacher, student, the paper's teacher and ZSKD accuracies) per config.
PAPER = {"alexnet": ("alexnet", "alexnet_half", 83.03, 69.56),
         "vgg19_vgg11": ("vgg19", "vgg11", 87.99, 74.10),
         "vgg19_resnet18": ("vgg19", "resnet18", 87.99, 74.76),
         "resnet18": ("resnet18", "resnet18_half", 86.54, 81.10)}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_full_configs_hold_the_papers_setting(name):
    """Teacher and student, 40,000 DIs from the β mixture {1.0, 0.1}, τ = 20 in synthesis and
    distillation, 1500 synthesis steps, both references, and the paper's figures (§4.1.3,
    Tables 3, 5 and 6); the whole config passes the pipeline's checks without training."""
    config = experiment_configs.load_config(f"zskd_cifar10.py:{name}")
    teacher, student, teacher_accuracy, zskd_accuracy = PAPER[name]
    assert (config.teacher.model, config.distill.student) == (teacher, student)
    assert config.dataset == "cifar10" and config.image_size == 32
    assert config.synthesis.method == "impressions" and config.synthesis.kind == "dirichlet"
    assert config.synthesis.num_per_class * 10 == 40000
    assert tuple(config.synthesis.betas) == (1.0, 0.1)
    assert config.synthesis.temperature == config.distill.temperature == 20.0
    assert config.synthesis.num_steps == 1500
    assert config.task == "distill" and set(config.distill.references) == {"kd", "ce"}
    assert config.paper["teacher"] == teacher_accuracy
    assert config.paper["zskd"] == zskd_accuracy
    assert pipeline._paper_figures(config)["zskd"] == zskd_accuracy
    pipeline.check_config(config)


def test_unknown_config_names_the_valid_ones():
    with pytest.raises(ValueError, match="alexnet"):
        experiment_configs.load_config("zskd_cifar10.py:alexnett")


@pytest.mark.slow
def test_alexnet_smoke_runs_end_to_end(session_data_dir, tmp_path, monkeypatch):
    """alexnet_smoke runs the whole pipeline on the CIFAR-10 files: a 4-step AlexNet teacher,
    80 colour Data Impressions it agrees with above chance (10 %), a distilled student."""
    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    workdir = tmp_path / "run"
    results = pipeline.run(experiment_configs.load_config("zskd_cifar10.py:alexnet_smoke"),
                           str(workdir))
    print(f"cifar10 smoke: agreement {results['teacher_target_agreement']:.2f}, student "
          f"{results['distill']['student_test_accuracy']:.2f} %")
    assert results["dataset"] == "cifar10" and results["num_transfer_images"] == 80
    assert results["teacher_target_agreement"] > 0.3
    assert results["distill"]["student"] == "alexnet_half"
    assert 0.0 <= results["distill"]["student_test_accuracy"] <= 100.0
    assert results["paper"]["zskd"] == 69.56
    assert os.path.basename(results["teacher"]).startswith("cifar10_alexnet_")
    for name in ("transfer_set.png", "similarity.png"):
        assert os.path.exists(workdir / "figures" / name), name
