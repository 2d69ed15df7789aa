"""Tests for per-example augmentation (Data Impressions §4.1.2)."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxinv import augment

H, W = 16, 12
ALL_ON = augment.AugmentConfig(scale=0.2, translate=0.2, rotate_degrees=30.0, hflip=True)


def _images(n: int = 4, channels: int = 3, seed: int = 0) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), (n, H, W, channels))


def _dot(row: int, col: int) -> jax.Array:
    """One bright pixel on a black (1, H, W, 1) image."""
    return jnp.zeros((1, H, W, 1)).at[0, row, col, 0].set(1.0)


def _centroid(image: jax.Array) -> np.ndarray:
    weights = np.asarray(image[..., 0], np.float64)
    rows, cols = np.mgrid[:H, :W]
    return np.array([(weights * rows).sum(), (weights * cols).sum()]) / weights.sum()


_augment = jax.jit(augment.augment_batch, static_argnames="config")


def test_all_off_is_exact_identity():
    images = _images()
    config = augment.AugmentConfig()
    assert config.is_identity
    assert augment.augment_batch(jax.random.key(0), images, config) is images
    np.testing.assert_array_equal(_augment(jax.random.key(0), images, config), images)


def test_shape_dtype_and_range():
    images = _images()
    out = _augment(jax.random.key(1), images, ALL_ON)
    chex.assert_shape(out, images.shape)
    chex.assert_type(out, jnp.float32)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not np.allclose(out, images)


def test_integer_shift_moves_a_pixel_exactly():
    transforms = augment.Transforms(scale=jnp.ones(1), angle=jnp.zeros(1),
                                    shift=jnp.array([[2.0, -3.0]]), flip=jnp.zeros(1, bool))
    out = jax.jit(augment.apply_transforms)(_dot(5, 6), transforms)
    np.testing.assert_array_equal(out, _dot(7, 3))


def test_random_translation_moves_the_pixel_by_the_drawn_shift():
    # With a fixed key, the batch is shifted by exactly the parameters sample_transforms draws.
    config = augment.AugmentConfig(translate=0.25)
    rng = jax.random.key(3)
    shift = augment.sample_transforms(rng, config, 1, H, W).shift[0]
    assert float(jnp.abs(shift).max()) > 0.5
    out = _augment(rng, _dot(8, 6), config)
    np.testing.assert_allclose(float(out.sum()), 1.0, atol=1e-5)
    np.testing.assert_allclose(_centroid(out[0]), np.array([8.0, 6.0]) + np.asarray(shift),
                               atol=1e-4)


def test_zoom_and_rotation_keep_the_centre_pixel_mass_around_the_centre():
    config = augment.AugmentConfig(scale=0.3, rotate_degrees=90.0)
    images = jnp.zeros((6, H + 1, W + 1, 1)).at[:, H // 2, W // 2, 0].set(1.0)
    out = _augment(jax.random.key(4), images, config)
    np.testing.assert_allclose(out[:, H // 2, W // 2, 0], np.ones(6), atol=1e-6)


def test_hflip_flips():
    images = _images(n=64, channels=1)
    out = _augment(jax.random.key(5), images, augment.AugmentConfig(hflip=True))
    flipped = np.all(np.asarray(out) == np.asarray(images[:, :, ::-1]), axis=(1, 2, 3))
    kept = np.all(np.asarray(out) == np.asarray(images), axis=(1, 2, 3))
    np.testing.assert_array_equal(flipped | kept, np.ones(64, bool))
    assert 10 < flipped.sum() < 54


def test_copies_of_one_image_get_different_transforms():
    images = jnp.repeat(_images(n=1), 4, axis=0)
    out = np.asarray(_augment(jax.random.key(6), images, ALL_ON)).reshape(4, -1)
    distances = np.abs(out[:, None] - out[None]).max(-1)
    assert np.all(distances[~np.eye(4, dtype=bool)] > 1e-3)


def test_jit_compiles_once_and_vmap_matches_loop():
    images = _images()
    jitted = jax.jit(chex.assert_max_traces(augment.augment_batch, n=1), static_argnames="config")
    first = jitted(jax.random.key(0), images, ALL_ON)
    jitted(jax.random.key(1), images, ALL_ON)
    chex.assert_trees_all_close(first, _augment(jax.random.key(0), images, ALL_ON))
    rngs = jax.random.split(jax.random.key(7), 2)
    groups = jnp.stack([images, 1.0 - images])
    mapped = jax.jit(jax.vmap(augment.augment_batch, in_axes=(0, 0, None)), static_argnums=2)(
        rngs, groups, ALL_ON)
    looped = jnp.stack([_augment(rngs[i], groups[i], ALL_ON) for i in range(2)])
    chex.assert_trees_all_close(mapped, looped, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"scale": -0.1}, "scale"),
    ({"scale": 1.0}, "scale"),
    ({"translate": 1.0}, "translate"),
    ({"translate": float("nan")}, "translate"),
    ({"rotate_degrees": -5.0}, "rotate_degrees"),
    ({"rotate_degrees": 270.0}, "rotate_degrees"),
    ({"hflip": 1}, "hflip"),
    ({"scale": "0.1"}, "number"),
])
def test_invalid_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        augment.AugmentConfig(**kwargs)


def test_bad_image_rank_raises():
    with pytest.raises(ValueError, match="\\(N, H, W, C\\)"):
        augment.augment_batch(jax.random.key(0), jnp.zeros((H, W, 3)), ALL_ON)


def test_from_config():
    d = ml_collections.ConfigDict({"scale": 0, "translate": 0.1, "hflip": False})
    config = augment.from_config(d)
    assert config == augment.AugmentConfig(translate=0.1)
    assert hash(config) == hash(augment.AugmentConfig(translate=0.1))
    assert augment.from_config({}).is_identity
    with pytest.raises(ValueError, match="unknown augmentation keys \\['zoom'\\]"):
        augment.from_config({"zoom": 0.1})
