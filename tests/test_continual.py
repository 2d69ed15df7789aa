"""Class-incremental learning (tasks/continual.py) on real MNIST."""

import inspect
import os

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from tfds_mock import mocked_tfds

from jaxinv import losses, pipeline, saved_model
from jaxinv.tasks import continual


@pytest.fixture(autouse=True)
def _real_data(data_dir, monkeypatch):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)


def test_double_distillation_centres_each_teacher_on_its_own_classes():
    old, new = jnp.array([[1.0, 3.0]]), jnp.array([[0.0, 4.0, 8.0]])
    target = jnp.array([[-1.0, 1.0, -4.0, 0.0, 4.0]])
    assert losses.double_distillation_loss(target, old, new) == 0.0
    # Each teacher's offset is its own: shifting one leaves the loss unchanged.
    logits = jnp.array([[0.5, -2.0, 1.0, 3.0, 0.0]])
    chex.assert_trees_all_close(losses.double_distillation_loss(logits, old + 7.0, new - 2.0),
                                losses.double_distillation_loss(logits, old, new))
    chex.assert_trees_all_close(losses.double_distillation_loss(logits, old, new),
                                jnp.mean((logits - target) ** 2))


def test_widened_head_keeps_old_rows_and_adds_fresh_ones():
    previous = {"params": {"conv": {"kernel": jnp.ones(3)},
                           "head": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones(2)}},
                "batch_stats": {}}
    fresh = {"params": {"conv": {"kernel": jnp.zeros(3)},
                        "head": {"kernel": jnp.full((4, 5), 2.0), "bias": jnp.full(5, 2.0)}},
             "batch_stats": {}}
    widened = continual.widened(previous, fresh)
    np.testing.assert_array_equal(widened["params"]["head"]["kernel"][:, :2], 1.0)
    np.testing.assert_array_equal(widened["params"]["head"]["kernel"][:, 2:], 2.0)
    np.testing.assert_array_equal(widened["params"]["head"]["bias"], [1, 1, 2, 2, 2])
    np.testing.assert_array_equal(widened["params"]["conv"]["kernel"], 1.0)


def test_the_step_function_is_given_no_old_class_data():
    parameters = list(inspect.signature(continual.dual_distillation_step).parameters)
    assert parameters == ["model_fn", "previous", "new_images", "new_labels", "impressions",
                          "block", "workdir"]


@pytest.mark.parametrize("override, message", [
    (lambda c: setattr(c.continual, "steps", ((0, 1), (1, 2))), "more than once"),
    (lambda c: setattr(c.continual, "steps", ((0, 1), (2, 12))), "not classes"),
    (lambda c: setattr(c.continual, "steps", ((0, 1), ())), "is empty"),
    (lambda c: setattr(c.continual, "di_budget", 3), "at least one Data Impression"),
    (lambda c: setattr(c.teacher, "classes", (0, 2)), "teacher.classes = \\(0, 1\\)"),
    (lambda c: setattr(c.continual, "methods", ("icarl",)), "must name some of"),
])
def test_bad_steps_are_refused_before_any_write(smoke_config_of, override, message, tmp_path):
    config = smoke_config_of("continual.py:smoke")
    override(config)
    with pytest.raises(ValueError, match=message):
        pipeline.run(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


@pytest.fixture(scope="module")
def smoke_run(session_data_dir, smoke_config_of, tmp_path_factory):
    """continual.py:smoke (three steps of two MNIST classes), with the labels every DI step
    was given recorded."""
    given = []
    real_step = continual.dual_distillation_step

    def spy(model_fn, previous, new_images, new_labels, impressions, **kwargs):
        given.append(np.asarray(new_labels))
        return real_step(model_fn, previous, new_images, new_labels, impressions, **kwargs)

    workdir = str(tmp_path_factory.mktemp("continual"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXINV_DATA_DIR", session_data_dir)
        patch.setattr(continual, "dual_distillation_step", spy)
        results = pipeline.run(smoke_config_of("continual.py:smoke"), workdir)
    return results, given, workdir


@pytest.mark.slow
def test_dual_distillation_balances_old_and_new_classes(smoke_run):
    results, given, workdir = smoke_run
    accuracy = results["continual"]["accuracy"]
    ours, finetune, fixed = (accuracy[m][1] for m in ("dual_distillation", "finetune",
                                                      "fixed_representation"))
    assert ours["old"] > finetune["old"] + 30.0, (ours, finetune)
    assert ours["new"] > fixed["new"] + 15.0, (ours, fixed)
    # Structural: each DI step saw only the new classes' labels (positions 2-3, then 4-5).
    assert [sorted(set(labels.tolist())) for labels in given] == [[2, 3], [4, 5]]
    assert os.path.exists(os.path.join(workdir, "continual", "figures",
                                       "accuracy_vs_classes.png"))
    assert saved_model.read_card(os.path.join(workdir, "continual", "step2",
                                              "dual_distillation")).classes == tuple(range(6))


@pytest.mark.slow
def test_resumed_sequence_ends_with_the_same_models(smoke_run, smoke_config_of, tmp_path,
                                                    monkeypatch):
    results, _, workdir = smoke_run
    config = smoke_config_of("continual.py:smoke")
    real_step = continual.baseline_step
    calls = []

    def interrupt(method, *args, **kwargs):
        calls.append(method)
        if len(calls) == 6:  # step 2, second baseline
            raise KeyboardInterrupt
        return real_step(method, *args, **kwargs)

    monkeypatch.setattr(continual, "baseline_step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(config, str(tmp_path))
    monkeypatch.setattr(continual, "baseline_step", real_step)
    assert pipeline.run(config, str(tmp_path))["continual"] == results["continual"]
    for method in config.continual.methods:
        chex.assert_trees_all_equal(
            saved_model.load_model(str(tmp_path / "continual" / "step2" / method))[1],
            saved_model.load_model(os.path.join(workdir, "continual", "step2", method))[1])


@pytest.mark.slow
def test_cifar100_smoke_runs_on_mock_data(smoke_config_of, tmp_path):
    """CIFAR-100 is not in shared/data: its config reads tfds cifar100, mocked here."""
    with mocked_tfds(str(tmp_path / "tfds"), "cifar100", num_examples=3000):
        results = pipeline.run(smoke_config_of("continual.py:cifar100_smoke"),
                               str(tmp_path / "run"))
    assert results["continual"]["num_classes_seen"] == [2, 4]
    assert set(results["continual"]["accuracy"]) == set(continual.METHODS)
