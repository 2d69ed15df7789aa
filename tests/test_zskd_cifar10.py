"""The CIFAR-10 configs of Tables 3, 5 and 6: the paper's settings, and a smoke run end to end."""

import json
import os

import pytest

from jaxinv import cli, config_files, models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "experiments", "configs", "zskd_cifar10.py")
# (teacher, student, the paper's ZSKD accuracy) per config.
PAPER = {"alexnet": ("alexnet", "alexnet_half", 69.56),
         "vgg19_vgg11": ("vgg19", "vgg11", 74.10),
         "vgg19_resnet18": ("vgg19", "resnet18", 74.76),
         "resnet18": ("resnet18", "resnet18_half", 81.10)}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_full_configs_hold_the_papers_setting(name):
    config = config_files.load_config(f"{CONFIG}:{name}")
    teacher, student, zskd_accuracy = PAPER[name]
    assert (config.teacher.model, config.student) == (teacher, student)
    assert config.paper["zskd"] == zskd_accuracy
    for model in (teacher, student):
        models.get_model(model, num_classes=10)
    # 40,000 DIs from the β mixture {1.0, 0.1}, τ = 20, 1500 steps (§4.1.3, Tables 5 and 6).
    assert config.synthesis.num_per_class * 10 == 40000
    assert tuple(config.synthesis.betas) == (1.0, 0.1)
    assert config.synthesis.temperature == config.distill.temperature == 20.0
    assert config.synthesis.num_steps == 1500
    assert set(config.references) == {"kd", "ce"}


def test_unknown_config_names_the_valid_ones():
    with pytest.raises(ValueError, match="alexnet"):
        config_files.load_config(f"{CONFIG}:alexnett")


def test_smoke_run_synthesises_colour_impressions_and_distils(session_data_dir, tmp_path,
                                                              monkeypatch, capsys):
    """alexnet_smoke runs the whole pipeline on the CIFAR-10 files in a minute: 80 DIs
    that a 4-step teacher agrees with far above chance (10 %) after 4 synthesis steps."""
    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    workdir = str(tmp_path / "run")
    capsys.readouterr()
    assert cli.main(["run", f"{CONFIG}:alexnet_smoke", "--workdir", workdir]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["dataset"] == "cifar10" and results["num_impressions"] == 80
    assert results["teacher_target_agreement"] > 0.3
    assert 0.0 <= results["zskd_student_test_accuracy"] <= 100.0
    assert os.path.exists(os.path.join(workdir, "figures", "impressions.png"))
