"""The distill task: a student that never sees real data learns MNIST from Data Impressions;
missing settings take the defaults; an interrupted distillation resumes bit-identically."""

import statistics

import chex
import jax
import numpy as np
import pytest

from jaxinv import data, report, train
from jaxinv.tasks import distill as distill_lib


def small_config(num_steps: int, **overrides) -> dict:
    """A partial `distill` block: what it leaves out takes `default_config()`'s value."""
    # Logging syncs with the host; hundreds of unsynced steps in flight can starve XLA:CPU's
    # collectives on 8 simulated devices over 2 cores.
    return {"num_steps": num_steps, "batch_size": 64, "checkpoint_every": num_steps,
            "log_every": 25, **overrides}


@pytest.fixture(scope="module")
def mnist_test(session_data_dir) -> data.Dataset:
    return data.load_dataset("mnist", "test", image_size=32, data_dir=session_data_dir)


def test_student_distilled_on_impressions_learns_real_mnist(mnist_teacher, mnist_impressions,
                                                            mnist_test, tmp_path):
    """200 KD steps of LeNet-5-half (a registry name) on 160 DIs alone reach far above chance
    (10 %) on the real MNIST test set: ZSKD's Table 1 in miniature."""
    _, transfer_set = mnist_impressions
    results = distill_lib.distill_and_evaluate(
        "lenet5_half", mnist_teacher, transfer_set.images, mnist_test,
        config=small_config(200), workdir=str(tmp_path), teacher_logits=transfer_set.logits)
    print(f"ZSKD student on {len(transfer_set)} DIs: {results['test_accuracy']:.2f} %")
    assert results["test_accuracy"] > 50.0
    assert results["num_images"] == 160
    # A finished student is final: asking again reads its results instead of training.
    again = distill_lib.distill_and_evaluate(
        "lenet5_half", mnist_teacher, transfer_set.images, mnist_test,
        config=small_config(200), workdir=str(tmp_path))
    assert again == results


class _Stop(Exception):
    pass


def _capture_fit_config(monkeypatch) -> list:
    """Replaces `train.fit` by one that records the config it gets and stops."""
    seen = []

    def fake_fit(*args, config, **kwargs):
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(train, "fit", fake_fit)
    return seen


@pytest.mark.parametrize("config, changed", [
    (None, {}),
    ({"num_steps": 40, "optimizer": {"learning_rate": 0.1}},
     {"num_steps": 40, "optimizer": {**distill_lib.default_config().optimizer.to_dict(),
                                     "learning_rate": 0.1}}),
])
def test_missing_settings_take_the_defaults(config, changed, mnist_teacher, mnist_impressions,
                                            tmp_path, monkeypatch):
    """`distill` with config=None trains with `default_config()`; a partial dict (nested
    blocks too) changes only the keys it names."""
    _, transfer_set = mnist_impressions
    seen = _capture_fit_config(monkeypatch)
    with pytest.raises(_Stop):
        distill_lib.distill("lenet5_half", mnist_teacher, transfer_set.images,
                            workdir=str(tmp_path), config=config,
                            teacher_logits=transfer_set.logits)
    expected = {**distill_lib.default_config().to_dict(), **changed}
    assert seen[0].to_dict() == expected
    assert expected["temperature"] == 20.0 and expected["scale_by_t2"]


def test_bad_settings_are_refused_before_training(mnist_teacher, mnist_impressions, mnist_test,
                                                 tmp_path):
    """Settings that cannot run, and images the teacher cannot take, raise a ValueError that
    says what to change, before the workdir is made."""
    _, transfer_set = mnist_impressions
    for config, message in [({"temperature": 0.0}, "temperature τ must be > 0"),
                            ({"num_step": 5}, "distillation has no setting 'num_step'"),
                            (small_config(4, batch_size=320), "exceeds the 160 training"),
                            (small_config(4, batch_size=60), "not a multiple of the 8")]:
        workdir = tmp_path / "w"
        with pytest.raises(ValueError, match=message):
            distill_lib.distill("lenet5_half", mnist_teacher, transfer_set.images,
                                workdir=str(workdir), config=config)
        assert not workdir.exists()
    images = np.random.default_rng(0).random((64, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match=r"shape \(28, 28, 1\) but the teacher takes"):
        distill_lib.distill_and_evaluate("lenet5_half", mnist_teacher, images, mnist_test,
                                         workdir=str(workdir), config=small_config(4))
    assert not workdir.exists()


def test_interrupted_distillation_resumes_bit_identically(mnist_teacher, mnist_impressions,
                                                         tmp_path, monkeypatch):
    """A distillation stopped at step 15 (checkpoint at 10) and rerun ends with exactly the
    variables of one that ran straight through."""
    _, transfer_set = mnist_impressions
    config = small_config(20, checkpoint_every=10, log_every=5)
    _, straight = distill_lib.distill("lenet5_half", mnist_teacher, transfer_set.images,
                                      workdir=str(tmp_path / "straight"), config=config,
                                      teacher_logits=transfer_set.logits)

    def crash_at_step_15(step, _):
        if step == 15:
            raise _Stop

    real_fit = train.fit
    with monkeypatch.context() as patch:
        patch.setattr(train, "fit", lambda *a, **k: real_fit(*a, **k,
                                                             step_callback=crash_at_step_15))
        with pytest.raises(_Stop):
            distill_lib.distill("lenet5_half", mnist_teacher, transfer_set.images,
                                workdir=str(tmp_path / "resumed"), config=config,
                                teacher_logits=transfer_set.logits)
    steps_done = []
    with monkeypatch.context() as patch:
        patch.setattr(train, "fit", lambda *a, **k: real_fit(
            *a, **k, step_callback=lambda step, _: steps_done.append(step)))
        _, resumed = distill_lib.distill("lenet5_half", mnist_teacher, transfer_set.images,
                                         workdir=str(tmp_path / "resumed"), config=config,
                                         teacher_logits=transfer_set.logits)
    assert steps_done == list(range(11, 21))  # resumed from the checkpoint at step 10
    chex.assert_trees_all_equal(jax.device_get(straight), jax.device_get(resumed))


def test_seed_spread_summarises_per_seed_accuracies():
    accuracies = [61.0, 64.5, 58.25]
    spread = distill_lib.seed_spread(range(3, 6), accuracies)
    assert spread["seeds"] == [3, 4, 5]
    assert spread["test_accuracies"] == accuracies
    assert spread["mean"] == pytest.approx(statistics.mean(accuracies))
    assert spread["sd"] == pytest.approx(statistics.stdev(accuracies))  # sample sd
    assert (spread["min"], spread["max"]) == (58.25, 64.5)


def test_extra_students_are_distilled_on_the_same_transfer_set(mnist_teacher, mnist_impressions,
                                                                session_data_dir, tmp_path,
                                                                monkeypatch):
    """`extra_students` adds one student per model name on the same TransferSet (a row of a
    teacher x student matrix), each in its own folder, each far above chance on real MNIST."""
    import ml_collections

    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    _, transfer_set = mnist_impressions
    block = distill_lib.default_config()
    block.update(small_config(150))
    block.student, block.extra_students = "lenet5_half", ("mlp",)
    config = ml_collections.ConfigDict({"dataset": "mnist", "image_size": 32, "distill": block})
    results = distill_lib.run(config, mnist_teacher, transfer_set, str(tmp_path))
    print(f"students on {len(transfer_set)} DIs: {results}")
    assert set(results["extra_students"]) == {"mlp"}
    assert results["extra_students"]["mlp"] > 30.0
    assert (tmp_path / "student_mlp" / "model").exists()


def test_evaluations_during_training_are_reported_only_as_selected_on_the_test_set(
        mnist_teacher, mnist_impressions, mnist_test, tmp_path):
    """With evaluate_every, the student is scored every that many steps and after the last;
    the best of those is never below the final model's and is written only under its label."""
    _, transfer_set = mnist_impressions
    results = distill_lib.distill_and_evaluate(
        "lenet5_half", mnist_teacher, transfer_set.images, mnist_test,
        config=small_config(100, evaluate_every=25), workdir=str(tmp_path),
        teacher_logits=transfer_set.logits)
    assert results["num_test_evaluations"] == 4  # steps 25, 50, 75 and 100
    best = results[distill_lib.BEST_ON_TEST]
    assert best >= results["test_accuracy"]
    assert set(results) == {"test_accuracy", "seconds", "num_images", "num_test_evaluations",
                            distill_lib.BEST_ON_TEST}
    final = [r for r in report.read_metrics(str(tmp_path))
             if "evaluation" in r and r["step"] == 100]
    assert final[0]["evaluation"]["test_accuracy"] == pytest.approx(results["test_accuracy"])


def test_evaluate_every_must_be_a_count_or_zero(mnist_impressions, smoke_config_of):
    config = smoke_config_of("zskd.py:smoke")
    config.distill.evaluate_every = -5
    with pytest.raises(ValueError, match="distill.evaluate_every must be 0"):
        distill_lib.check_config(config, len(mnist_impressions[1]))
