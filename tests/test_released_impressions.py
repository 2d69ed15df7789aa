"""The released ZSKD procedure (synthesis.procedure="released"): β-free targets, batches
rescaled to [0, 1], warm starts from batch to batch, and its configs."""

import jax
import numpy as np
import pytest

from jaxinv import experiment_configs, pipeline, synthesis
from jaxinv.synthesis import dirichlet, impressions


def _released_config(**overrides):
    config = impressions.smoke_config()
    config.update(dict(procedure="released", batch_size=4, num_per_class=8, num_steps=5,
                       learning_rate=1e-3, schedule="constant", init_resolution=None))
    config.update(overrides)
    return config


@pytest.mark.parametrize("beta", [1.0, 0.1, 7.0])
def test_concentration_is_the_normalised_similarity_plus_1e4_whatever_beta(beta):
    kernel = np.random.default_rng(0).normal(size=(32, 10)).astype(np.float32)
    similarity = dirichlet.class_similarity(kernel)
    alpha = np.asarray(dirichlet.released_concentration(similarity, beta))
    np.testing.assert_allclose(alpha, np.asarray(similarity) + 1e-4, rtol=1e-6, atol=1e-7)
    assert alpha.min() == pytest.approx(1e-4)


def test_released_targets_ignore_beta_and_keep_the_layout():
    kernel = np.random.default_rng(1).normal(size=(32, 10)).astype(np.float32)
    similarity = dirichlet.class_similarity(kernel)
    rng = jax.random.key(3)
    targets, classes, betas = dirichlet.released_dirichlet_targets(rng, similarity, (1.0, 0.1),
                                                                   num_per_class=6)
    again, _, _ = dirichlet.released_dirichlet_targets(rng, similarity, (1.0, 1.0), 6)
    # The 0.1 half is undone by re-normalising (up to float rounding of 0.1 x C).
    np.testing.assert_allclose(targets, again, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(targets).sum(-1), 1.0, rtol=1e-5)
    assert list(np.asarray(classes)) == [k for k in range(10) for _ in range(6)]
    assert list(np.asarray(betas)[:6]) == pytest.approx([1.0] * 3 + [0.1] * 3)


def _two_rounds(teacher):
    method, inputs, _ = impressions.build(teacher, _released_config())
    state = method.init(jax.random.key(0), inputs)
    first, _ = method.step(state, teacher.variables, jax.random.key(1))
    first_images = np.asarray(first["images"])
    second, metrics = method.step(first, teacher.variables, jax.random.key(2))
    return method, first_images, second, metrics


def test_each_class_batch_spans_exactly_zero_to_one_after_a_step(mnist_teacher):
    _, first_images, second, metrics = _two_rounds(mnist_teacher)
    for images in (first_images, np.asarray(second["images"])):
        per_batch = images.reshape(images.shape[0], -1)  # (classes, batch x pixels)
        np.testing.assert_allclose(per_batch.min(-1), 0.0, atol=1e-6)
        np.testing.assert_allclose(per_batch.max(-1), 1.0, atol=1e-6)
    assert np.isfinite(float(metrics["loss"]))


def test_the_second_batch_of_a_class_starts_from_the_first_batchs_final_images(mnist_teacher):
    """Five steps of Adam at 1e-3 move a pixel by about 5e-3 (before the rescale), so the
    second batch ends next to the first; a fresh uniform start would differ by about 1/3."""
    method, first_images, second, _ = _two_rounds(mnist_teacher)
    bank = np.asarray(second["bank"])
    np.testing.assert_array_equal(bank[0], first_images)
    assert np.abs(bank[1] - bank[0]).mean() < 0.02
    assert int(second["opt_state"][0].count) == 2 * 5  # the Adam state is carried over
    images = np.asarray(method.images(second))  # class-major, batches in order
    np.testing.assert_array_equal(images[:4], bank[0, 0])
    np.testing.assert_array_equal(images[4:8], bank[1, 0])
    np.testing.assert_array_equal(images[8:12], bank[0, 1])


def test_released_impressions_reach_their_classes(mnist_teacher, tmp_path):
    """Through the rounds driver, at a rate that gets there in a few steps: the teacher puts
    most impressions in the class their target peaks at (β-free targets often peak elsewhere
    than the class they were drawn for)."""
    config = _released_config(num_steps=40, learning_rate=0.05)
    method, inputs, metadata = impressions.build(mnist_teacher, config)
    transfer_set = synthesis.synthesize(method, mnist_teacher, inputs, metadata=metadata,
                                        seed=0, workdir=str(tmp_path), checkpoint_every=1)
    assert transfer_set.images.shape == (80, 32, 32, 1)
    agreement = np.mean(transfer_set.logits.argmax(-1) == transfer_set.targets.argmax(-1))
    assert agreement > 0.8, agreement


class _Interrupt(Exception):
    pass


def test_a_run_killed_after_a_batch_resumes_bit_identically(mnist_teacher, tmp_path,
                                                            monkeypatch):
    from jaxinv import checkpoint

    method, inputs, metadata = impressions.build(mnist_teacher, _released_config())
    straight = synthesis.synthesize(method, mnist_teacher, inputs, metadata=metadata, seed=0,
                                    workdir=str(tmp_path / "straight"), checkpoint_every=1)
    original_save = checkpoint.Checkpoints.save

    def save_then_stop(self, step, state, meta=None):
        original_save(self, step, state, meta)
        self.wait()
        raise _Interrupt

    monkeypatch.setattr(checkpoint.Checkpoints, "save", save_then_stop)
    with pytest.raises(_Interrupt):
        synthesis.synthesize(method, mnist_teacher, inputs, metadata=metadata, seed=0,
                             workdir=str(tmp_path / "killed"), checkpoint_every=1)
    monkeypatch.setattr(checkpoint.Checkpoints, "save", original_save)
    resumed = synthesis.synthesize(method, mnist_teacher, inputs, metadata=metadata, seed=0,
                                   workdir=str(tmp_path / "killed"), checkpoint_every=1)
    np.testing.assert_array_equal(resumed.images, straight.images)
    np.testing.assert_array_equal(resumed.logits, straight.logits)


@pytest.mark.parametrize("override, message", [
    (dict(batch_size=3), "divides num_per_class"),
    (dict(schedule="linear"), "schedule"),
    (dict(pixel_l2=1e-3), "pixel_l2"),
    (dict(init_resolution=8), "init_resolution"),
    (dict(kind="one_hot"), "kind"),
    (dict(procedure="authors"), "procedure"),
])
def test_settings_the_released_procedure_lacks_are_refused(override, message):
    config = _released_config(**override)
    with pytest.raises(ValueError, match=message):
        synthesis.check_config(config, (32, 32, 1), 10)


@pytest.mark.parametrize("dataset, num_examples", [("mnist", 24000),
                                                   ("fashion_mnist", 48000)])
def test_released_configs_keep_the_codes_shape(dataset, num_examples):
    config = experiment_configs.load_config(f"zskd.py:{dataset}_released")
    pipeline.check_config(config)
    block = config.synthesis
    assert (block.procedure, block.batch_size, block.learning_rate) == ("released", 100, 1e-3)
    assert block.num_per_class * 10 == num_examples
    epoch = num_examples // 64
    assert config.distill.batch_size == 64 and config.distill.evaluate_every == epoch
    assert config.distill.num_steps >= 50 * epoch and config.distill.num_seeds == 3
    assert config.distill.optimizer.learning_rate == 1e-3
    assert experiment_configs.load_config(
        f"zskd.py:{dataset}_released_paper_steps").synthesis.num_steps == 1500
    assert experiment_configs.load_config(f"zskd.py:{dataset}").synthesis.get(
        "procedure", "paper") == "paper"


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_released_images_synthesise_as_released_and_distil_as_the_default(dataset):
    images = experiment_configs.load_config(f"zskd.py:{dataset}_released_images")
    pipeline.check_config(images)
    released = experiment_configs.load_config(f"zskd.py:{dataset}_released")
    default = experiment_configs.load_config(f"zskd.py:{dataset}")
    # The same synthesis block, so a copy of the _released run's synthesis/ folder is reused.
    assert images.synthesis.to_dict() == released.synthesis.to_dict()
    assert images.teacher.to_dict() == released.teacher.to_dict()
    for key in ("batch_size", "num_steps", "optimizer", "augment", "temperature"):
        assert images.distill[key] == default.distill[key]
    assert images.distill.num_seeds == 3
