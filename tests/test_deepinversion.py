"""DeepInversion (jaxinv/synthesis/deepinversion.py) on a real BatchNorm MNIST teacher: it
matches the teacher's BN statistics, refuses teachers and settings it cannot use, and its smoke
config runs end to end. Determinism, 1 vs 8 devices and resume are the shared contract's."""

import jax
import numpy as np
import pytest

from jaxinv import data, diversity, losses, models, pipeline, synthesis, train
from jaxinv.synthesis import deepinversion
from jaxinv.teacher import TeacherLayerError


def _config(**overrides):
    config = deepinversion.smoke_config()
    config.update(dict(num_per_class=8, batch_size=10, num_steps=60, learning_rate=0.1,
                       weights={"bn": 1.0, "cls": 1.0, "tv": 1e-3, "l2": 0.0}, jitter=2,
                       chunk_size=80, steps_per_call=30))
    config.update(overrides)
    return config


def _bn_loss(teacher, images, batch_size):
    return float(np.mean([losses.batchnorm_statistics_loss(
        teacher.batchnorm_statistics(images[i:i + batch_size])[1])
        for i in range(0, len(images), batch_size)]))


def test_a_short_run_lowers_the_bn_loss_and_reaches_the_classes(mnist_bn_teacher, tmp_path):
    config = _config()
    method, inputs, metadata = deepinversion.build(mnist_bn_teacher, config)
    init_rng = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 0))[0]
    start = np.asarray(method.images(method.init(init_rng, inputs)))
    transfer_set = synthesis.synthesize(method, mnist_bn_teacher, inputs, metadata=metadata,
                                        seed=config.seed, workdir=str(tmp_path),
                                        chunk_size=config.chunk_size,
                                        steps_per_call=config.steps_per_call)
    before = _bn_loss(mnist_bn_teacher, start, config.batch_size)
    after = _bn_loss(mnist_bn_teacher, transfer_set.images, config.batch_size)
    print(f"BN loss {before:.3f} -> {after:.3f}")
    assert after < 0.7 * before
    assert np.mean(transfer_set.logits.argmax(-1) == metadata["class"]) > 0.4  # chance: 0.1
    # Every batch mixes classes, as the reference's random labels do.
    batches = metadata["class"].reshape(-1, config.batch_size)
    assert all(len(set(batch)) > 1 for batch in batches)


def test_a_teacher_without_batchnorm_is_refused_naming_methods_that_need_none(mnist_teacher,
                                                                               tmp_path):
    with pytest.raises(TeacherLayerError, match="Data Impressions, CAKE or DfM"):
        synthesis.synthesize_from_config(mnist_teacher, _config(), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, message", [
    (dict(batch_size=1), "batch_size must be a whole number ≥ 2"),
    (dict(weights={"bn": -1.0, "cls": 1.0, "tv": 0.0, "l2": 0.0}), "weights must be ≥ 0"),
    (dict(jitter=-1), "jitter must be a whole number of pixels ≥ 0"),
    (dict(batch_size=12), "is not a multiple of batch_size 12"),
    (dict(learning_rate=0.0), "learning_rate must be > 0"),
])
def test_bad_settings_are_refused_with_what_to_do(override, message):
    config = _config()
    config.update(override)
    with pytest.raises(ValueError, match=message):
        synthesis.check_config(config, (32, 32, 1), 10)


def test_jitter_rolls_and_flips_the_whole_batch_alike():
    images = np.arange(2 * 4 * 4).reshape(2, 4, 4, 1).astype(np.float32)
    out = np.asarray(deepinversion.jitter_and_flip(images, jax.random.key(3), jitter=2,
                                                   flip=True))
    found = [(dy, dx, f) for dy in range(-2, 3) for dx in range(-2, 3) for f in (False, True)
             if np.array_equal(out, np.roll(images, (dy, dx), axis=(1, 2))[:, :, ::-1]
                               if f else np.roll(images, (dy, dx), axis=(1, 2)))]
    assert found  # one roll (and flip) explains both images
    unchanged = deepinversion.jitter_and_flip(images, jax.random.key(3), jitter=0, flip=False)
    np.testing.assert_array_equal(unchanged, images)


@pytest.mark.slow
@pytest.mark.parametrize("spec, method", [("smoke", "deepinversion"),
                                          ("smoke_adi", "adaptive_deepinversion")])
def test_smoke_config_runs_end_to_end(spec, method, mnist_bn_teacher, teacher_store,
                                      session_data_dir, smoke_config_of, monkeypatch, tmp_path):
    monkeypatch.setenv("JAXINV_DATA_DIR", session_data_dir)
    results = pipeline.run(smoke_config_of(f"deepinversion.py:{spec}"), str(tmp_path / "run"))
    assert results["method"] == method and results["num_transfer_images"] == 80
    assert results["teacher_target_agreement"] > 0.3  # chance: 0.1
    assert 0.0 <= results["distill"]["student_test_accuracy"] <= 100.0
    # Every set's diversity; the real images' and the KD ceiling once, with DeepInversion.
    assert set(results["distill"]["diversity"]) == {
        *(f"fid_{layer}" for layer in diversity.LAYERS), "pairwise_cosine_distance"}
    with_ceiling = method == "deepinversion"
    assert ("diversity_real" in results["distill"]) == with_ceiling
    assert ("student_kd_test_accuracy" in results["distill"]) == with_ceiling


def test_the_bn_teacher_learns_mnist(mnist_bn_teacher, session_data_dir):
    test = data.load_dataset("mnist", "test", data_dir=session_data_dir, limit=2000)
    accuracy = train.evaluate(mnist_bn_teacher.model, mnist_bn_teacher.variables, test.images,
                              test.labels)["accuracy"]
    assert accuracy > 80.0
    assert models.count_params(mnist_bn_teacher.variables["params"]) == 61_050


def test_adaptive_rounds_fill_the_bank_a_batch_at_a_time_and_carry_the_student(
        mnist_bn_teacher):
    """ADI: each round writes one new batch into the bank and leaves the earlier ones as they
    were, and the student (trained between rounds) carries over from round to round."""
    config = _config(num_per_class=3, batch_size=10, num_steps=10, competition=1.0,
                     student_steps=3)
    method, inputs, _ = deepinversion.build(mnist_bn_teacher, config)
    assert method.num_steps == 3 and not method.independent_examples
    step = jax.jit(method.step)
    state = method.init(jax.random.key(0), inputs)
    students = [state["student"].params]
    banks = [np.asarray(state["bank"])]
    for index in range(3):
        state, metrics = step(state, mnist_bn_teacher.variables, jax.random.key(index + 1))
        assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["student_loss"])
        banks.append(np.asarray(state["bank"]))
        students.append(state["student"].params)
        filled = 10 * (index + 1)
        np.testing.assert_array_equal(banks[-1][:filled - 10], banks[-2][:filled - 10])
        assert np.abs(banks[-1][filled - 10:filled]).sum() > 0
        assert not np.any(banks[-1][filled:])
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), students[0], students[-1])
    assert all(jax.tree.leaves(changed))


def test_adaptive_settings_are_checked():
    config = _config(competition=-1.0)
    with pytest.raises(ValueError, match="competition must be ≥ 0"):
        synthesis.check_config(config, (32, 32, 1), 10)
    config = _config(competition=1.0, student="nonexistent")
    with pytest.raises(ValueError, match="Unknown model 'nonexistent'"):
        synthesis.check_config(config, (32, 32, 1), 10)
