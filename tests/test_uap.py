"""UAP generator and task: the ε-ball, fooling beyond uniform noise on real MNIST, resume, bad
input."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import pipeline
from jaxinv.models.uap_generator import UAPGenerator
from jaxinv.tasks import uap

EPS = 32 / 255


@pytest.mark.parametrize("image_shape", [(32, 32, 1), (28, 28, 3), (20, 36, 1)])
def test_every_perturbation_lies_in_the_eps_ball(image_shape):
    generator = UAPGenerator(image_shape, EPS)
    variables = generator.init(jax.random.key(0), jnp.zeros((1, 10)))
    # Scale the last layer up so that tanh saturates: the bound must hold there too.
    variables = jax.tree_util.tree_map_with_path(
        lambda path, x: 100.0 * x if "deconv4" in jax.tree_util.keystr(path) else x, variables)
    z = jnp.concatenate([jnp.ones((1, 10)), -jnp.ones((1, 10)),
                         jax.random.uniform(jax.random.key(1), (30, 10), minval=-1, maxval=1)])
    perturbations = generator.apply(variables, z)
    assert perturbations.shape == (32, *image_shape)
    assert float(jnp.abs(perturbations).max()) <= np.float32(EPS)  # ε·tanh, in float32
    assert float(jnp.abs(perturbations).max()) > 0.9 * EPS


def _block(smoke_config_of, **overrides):
    block = smoke_config_of("uap.py:smoke").uap
    for key, value in overrides.items():
        block[key] = value
    return block


def test_interrupted_generator_training_resumes_identically(mnist_teacher, mnist_impressions,
                                                            smoke_config_of, tmp_path):
    _, transfer_set = mnist_impressions
    block = _block(smoke_config_of, num_steps=20, checkpoint_every=10, log_every=10)

    def stop_at_15(step, _):
        if step == 15:
            raise KeyboardInterrupt

    _, straight = uap.train_generator(mnist_teacher, transfer_set.images, EPS, block, 0,
                                      str(tmp_path / "straight"))
    with pytest.raises(KeyboardInterrupt):
        uap.train_generator(mnist_teacher, transfer_set.images, EPS, block, 0,
                            str(tmp_path / "resumed"), step_callback=stop_at_15)
    _, resumed = uap.train_generator(mnist_teacher, transfer_set.images, EPS, block, 0,
                                     str(tmp_path / "resumed"))
    chex.assert_trees_all_equal(jax.device_get(straight), jax.device_get(resumed))


@pytest.mark.slow
def test_smoke_config_fools_beyond_uniform_noise(mnist_teacher, smoke_config_of, tmp_path,
                                                 data_dir, monkeypatch):
    """uap.py:smoke on the real MNIST teacher: generators trained 200 steps on its DIs and CIs
    at ε = 32/255 fool at least twice as often as uniform noise in the same ball."""
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    results = pipeline.run(smoke_config_of("uap.py:smoke"), str(tmp_path / "run"))["uap"]
    entry = results["by_eps"]["32/255"]
    floor = entry["uniform"]["fooling_rate"]
    assert entry["data_impressions"]["fooling_rate"]["mean"] >= 2 * max(floor, 1.0), entry
    assert entry["class_impressions"]["fooling_rate"]["mean"] > floor, entry
    assert (tmp_path / "run" / "uap" / "figures" / "uaps_eps32.png").exists()


@pytest.mark.parametrize("overrides, message", [
    ({"eps_values": (0.0,)}, r"eps_values must each be in \(0, 1\]"),
    ({"eps_values": (1.5,)}, r"eps_values must each be in \(0, 1\]"),
    ({"latent_dim": 0}, "latent_dim must be a whole number ≥ 1"),
    ({"sources": ("data_impressions", "imagenet")}, "unknown \\['imagenet'\\]"),
])
def test_bad_uap_blocks_are_refused_before_anything_runs(smoke_config_of, tmp_path, data_dir,
                                                         monkeypatch, overrides, message):
    monkeypatch.setenv("JAXINV_DATA_DIR", data_dir)
    config = smoke_config_of("uap.py:smoke")
    for key, value in overrides.items():
        config.uap[key] = value
    with pytest.raises(ValueError, match=message):
        pipeline.run(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_empty_or_misshapen_transfer_sets_are_refused(mnist_teacher, mnist_impressions,
                                                      smoke_config_of, tmp_path):
    _, transfer_set = mnist_impressions
    config = smoke_config_of("uap.py:smoke")
    with pytest.raises(ValueError, match="TransferSet is empty"):
        uap.run(config, mnist_teacher, transfer_set.subset(np.arange(0)), str(tmp_path / "a"))
    small = transfer_set.subset(np.arange(4))
    small = dataclasses.replace(small, images=small.images[:, :28, :28])
    with pytest.raises(ValueError, match=r"images of shape \(28, 28, 1\) but the teacher"):
        uap.run(config, mnist_teacher, small, str(tmp_path / "b"))
