"""PGD adversarial training and the robustness task, on real MNIST."""

import os

import chex
import jax
import numpy as np
import pytest

from jaxinv import adversarial_training, attacks, data, pipeline, saved_model, train
from jaxinv.tasks import robustness

ADVERSARIAL_STEPS = 40


@pytest.fixture(scope="module")
def mnist_test(session_data_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXINV_DATA_DIR", session_data_dir)
        return data.load_dataset("mnist", "test", image_size=32)


@pytest.fixture(scope="module")
def robust_teacher(session_data_dir, teacher_store, smoke_config_of):
    """teacher.py:smoke_robust (150 steps of PGD-3 training at ε ramped to 0.3), from the
    session's store, as robustness.py:smoke_robust gets it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXINV_DATA_DIR", session_data_dir)
        teacher, _ = pipeline.obtain_teacher(smoke_config_of("robustness.py:smoke_robust"))
    return teacher


def test_pgd_training_resists_pgd_better_than_plain_training(mnist_teacher, robust_teacher,
                                                               mnist_test):
    """The same LeNet-5 recipe, with and without PGD training: under PGD at ε = 0.2 the
    PGD-trained model keeps clearly more of its accuracy."""
    images, labels = mnist_test.images[:500], mnist_test.labels[:500]
    pgd = {"pgd": attacks.attack_config("pgd", 0.2)}
    plain = robustness.evaluate_robustness(mnist_teacher.model, mnist_teacher.variables, images,
                                           labels, pgd, batch_size=128)
    robust = robustness.evaluate_robustness(robust_teacher.model, robust_teacher.variables,
                                            images, labels, pgd, batch_size=128)
    assert robust["natural_accuracy"] > 50.0, robust
    assert robust["pgd"]["accuracy"] > plain["pgd"]["accuracy"] + 10.0, (plain, robust)


def test_interrupted_adversarial_training_resumes_identically(smoke_config_of, tmp_path,
                                                              data_dir, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    config = smoke_config_of("teacher.py:smoke_robust")
    config.num_steps, config.checkpoint_every = ADVERSARIAL_STEPS, 10

    def stop_at_25(step, _):
        if step == 25:
            raise KeyboardInterrupt

    straight = str(tmp_path / "straight")
    train.train_and_evaluate(config, straight)
    interrupted = str(tmp_path / "interrupted")
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(config, interrupted, step_callback=stop_at_25)
    assert train.train_and_evaluate(config, interrupted)["resumed"]
    chex.assert_trees_all_equal(jax.device_get(saved_model.load_model(straight)[1]),
                                jax.device_get(saved_model.load_model(interrupted)[1]))


def test_eps_zero_fools_nothing_over_a_padded_last_batch(mnist_teacher, mnist_test):
    images, labels = mnist_test.images[:250], mnist_test.labels[:250]
    configs = {name: attacks.attack_config(name, 0.0) for name in attacks.ATTACK_NAMES}
    results = robustness.evaluate_robustness(mnist_teacher.model, mnist_teacher.variables,
                                             images, labels, configs, batch_size=80)
    natural = train.evaluate(mnist_teacher.model, mnist_teacher.variables, images, labels,
                             batch_size=80)["accuracy"]
    assert results["natural_accuracy"] == natural
    for name in attacks.ATTACK_NAMES:
        assert results[name] == {"accuracy": natural, "fooling_rate": 0.0}


@pytest.mark.parametrize("block, message", [
    (dict(attack="pgd", norm="linf", eps=0.3, num_steps=10), "lacks \\['ramp_steps'\\]"),
    (dict(attack="pgd", norm="linf", eps=0.3, num_steps=10, ramp_steps=0, alpha=1),
     "unknown \\['alpha'\\]"),
    (dict(attack="pgd", norm="linf", eps=0.3, num_steps=10, ramp_steps=-5),
     "ramp_steps must be a whole number ≥ 0"),
    (dict(attack="pgd", norm="l3", eps=0.3, num_steps=10, ramp_steps=0), "Unknown attack norm"),
    (dict(attack="pgd", norm="linf", eps=-0.3, num_steps=10, ramp_steps=0), "eps must be"),
])
def test_bad_adversarial_blocks_are_refused(block, message):
    with pytest.raises(ValueError, match=message):
        adversarial_training.from_config(block)


def test_bad_adversarial_teacher_config_is_refused_before_the_workdir_exists(
        smoke_config_of, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    config = smoke_config_of("teacher.py:smoke_robust")
    config.adversarial.attack = "deepfool"
    with pytest.raises(ValueError, match="Unknown attack 'deepfool'"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_robustness_task_runs_end_to_end(mnist_teacher, smoke_config_of, tmp_path, data_dir,
                                         monkeypatch):
    """robustness.py:smoke: three students distilled on DIs, all four models attacked."""
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    results = pipeline.run(smoke_config_of("robustness.py:smoke"), str(tmp_path / "run"))
    figures = results["robustness"]
    assert figures["num_test_images"] == 200 and figures["students"]["seeds"] == [0, 1, 2]
    teacher = figures["teacher"]
    assert teacher["natural_accuracy"] > 80.0
    assert teacher["pgd"]["accuracy"] <= teacher["fgsm"]["accuracy"] < teacher["natural_accuracy"]
    summary = figures["students"]["summary"]
    assert summary["natural_accuracy"]["mean"] > 30.0  # chance is 10 %
    assert len(summary["pgd_eps_curve"]["mean"]) == len(figures["eps_curve"])
    for name in ("table.md", "pgd_accuracy_vs_eps.png", "student_seed2/model/model.json"):
        assert os.path.exists(tmp_path / "run" / "robustness" / name), name
    assert "students (n=3" in (tmp_path / "run" / "robustness" / "table.md").read_text()
    # The figures are kept: a rerun of the finished run reports the same.
    again = pipeline.run(smoke_config_of("robustness.py:smoke"), str(tmp_path / "run"))
    assert again["robustness"] == figures


def test_robustness_block_is_checked_before_anything_runs(smoke_config_of, tmp_path,
                                                         data_dir, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    config = smoke_config_of("robustness.py:smoke")
    config.robustness.attacks = ("fgsm", "carlini")
    with pytest.raises(ValueError, match="Unknown attack 'carlini'"):
        pipeline.run(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    assert np.isclose(smoke_config_of("robustness.py:fashion_mnist").robustness.eps, 0.1)
