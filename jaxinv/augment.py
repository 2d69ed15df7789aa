"""On-the-fly per-example image augmentation for distillation on a transfer set.

Each example gets its own random affine warp (zoom, rotation, translation about the image centre)
and, optionally, a horizontal flip. Warps use bilinear sampling with zeros outside the image, so
values stay in [0, 1]. Everything is off by default: flips, for one, are wrong for digits.

References:
  Nayak, Mopuri, Jain, Chakraborty, "Mining Data Impressions from Deep Models as Substitute for
  the Unavailable Training Data", IEEE TPAMI 2021, §4.1.2 ("scaling, translation, rotation,
  flipping").
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy import ndimage


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random per-example transforms; hashable, so it can be a static jit argument.

    Attributes:
      scale: max relative zoom s, in [0, 1); the zoom factor is drawn from [1 - s, 1 + s].
      translate: max shift as a fraction of the image size, in [0, 1); drawn per axis from
        [-translate, translate] · size.
      rotate_degrees: max rotation angle in degrees, in [0, 180]; drawn from [-r, r].
      hflip: flip left-right with probability 1/2.
    """

    scale: float = 0.0
    translate: float = 0.0
    rotate_degrees: float = 0.0
    hflip: bool = False

    def __post_init__(self):
        for name, upper, closed in (("scale", 1.0, False), ("translate", 1.0, False),
                                    ("rotate_degrees", 180.0, True)):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise ValueError(f"AugmentConfig.{name} must be a number; got {value!r}")
            in_range = 0 <= value <= upper if closed else 0 <= value < upper
            if not (math.isfinite(value) and in_range):
                bracket = "]" if closed else ")"
                raise ValueError(f"AugmentConfig.{name} must be in [0, {upper:g}{bracket}; "
                                 f"got {value}")
        if not isinstance(self.hflip, bool):
            raise ValueError(f"AugmentConfig.hflip must be a bool; got {self.hflip!r}")

    @property
    def has_affine(self) -> bool:
        """Whether any of zoom, translation or rotation is on (a warp is needed)."""
        return bool(self.scale or self.translate or self.rotate_degrees)

    @property
    def is_identity(self) -> bool:
        """Whether every transform is off, so augmentation returns its input."""
        return not (self.has_affine or self.hflip)


def from_config(d: Mapping[str, Any]) -> AugmentConfig:
    """Builds an AugmentConfig from a mapping (a dict or an ml_collections.ConfigDict).

    Args:
      d: keys among `scale`, `translate`, `rotate_degrees`, `hflip`; missing keys
        keep their (off) defaults.

    Returns:
      The validated config.

    References:
      Nayak et al., "Mining Data Impressions from Deep Models", TPAMI 2021, §4.1.2.
    """
    values = dict(d)
    known = {f.name for f in dataclasses.fields(AugmentConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown augmentation keys {unknown}; expected some of {sorted(known)}")
    # ConfigDicts often hold ints (e.g. translate=0); the dataclass fields are floats.
    for name in known - {"hflip"}:
        if name in values and isinstance(values[name], numbers.Real) and not isinstance(
                values[name], bool):
            values[name] = float(values[name])
    return AugmentConfig(**values)


class Transforms(NamedTuple):
    """Per-example transform parameters for a batch of N images.

    Attributes:
      scale: (N,) zoom factors, > 0; > 1 enlarges the content.
      angle: (N,) rotation angles in radians.
      shift: (N, 2) translations in pixels, (rows, columns).
      flip: (N,) bool, flip left-right before warping.
    """

    scale: jax.Array
    angle: jax.Array
    shift: jax.Array
    flip: jax.Array


def sample_transforms(rng: jax.Array, config: AugmentConfig, num_examples: int, height: int,
                      width: int) -> Transforms:
    """Draws independent transform parameters for each of `num_examples` images.

    Args:
      rng: PRNG key.
      config: ranges to draw from.
      num_examples: N.
      height: image height H in pixels (sets the translation range).
      width: image width W in pixels.

    Returns:
      Transforms with (N,)-shaped fields (shift is (N, 2)); a disabled transform is the
      identity for every example.

    References:
      Nayak et al., "Mining Data Impressions from Deep Models", TPAMI 2021, §4.1.2.
    """
    rng_scale, rng_angle, rng_shift, rng_flip = jax.random.split(rng, 4)
    n = (num_examples,)
    scale = jax.random.uniform(rng_scale, n, minval=1.0 - config.scale, maxval=1.0 + config.scale)
    max_angle = math.radians(config.rotate_degrees)
    angle = jax.random.uniform(rng_angle, n, minval=-max_angle, maxval=max_angle)
    size = jnp.asarray([height, width], jnp.float32)
    shift = jax.random.uniform(rng_shift, n + (2,), minval=-1.0, maxval=1.0) * (
        config.translate * size)
    flip = jax.random.bernoulli(rng_flip, 0.5 if config.hflip else 0.0, n)
    return Transforms(scale=scale, angle=angle, shift=shift, flip=flip)


def _inverse_affine(scale: jax.Array, angle: jax.Array, shift: jax.Array,
                    center: jax.Array) -> jax.Array:
    """(2, 3) matrix mapping output pixel coordinates (row, col, 1) to input coordinates.

    The forward map is p = c + s·R(θ)·(q - c) + t, so sampling needs its inverse,
    q = c + R(θ)ᵀ·(p - c - t) / s.
    """
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    linear = jnp.array([[cos, sin], [-sin, cos]]) / scale
    offset = center - linear @ (center + shift)
    return jnp.concatenate([linear, offset[:, None]], axis=1)


def _warp(image: jax.Array, inverse: jax.Array) -> jax.Array:
    """Bilinearly resamples an (H, W, C) image at `inverse` applied to its pixel grid."""
    height, width, _ = image.shape
    rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                              jnp.arange(width, dtype=jnp.float32), indexing="ij")
    grid = jnp.stack([rows, cols, jnp.ones_like(rows)])
    source = jnp.einsum("ij,jhw->ihw", inverse, grid)
    sample = lambda channel: ndimage.map_coordinates(channel, list(source), order=1,
                                                     mode="constant", cval=0.0)
    return jax.vmap(sample, in_axes=2, out_axes=2)(image)


def _flip(images: jax.Array, flip: jax.Array) -> jax.Array:
    """Flips left-right the examples of an (N, H, W, C) batch where `flip` (N,) is True."""
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def apply_transforms(images: jax.Array, transforms: Transforms) -> jax.Array:
    """Applies each example's flip and then its affine warp about the image centre.

    Args:
      images: (N, H, W, C) float, values in [0, 1].
      transforms: per-example parameters, e.g. from `sample_transforms`.

    Returns:
      (N, H, W, C) in [0, 1]; pixels that come from outside the image are 0.

    References:
      Nayak et al., "Mining Data Impressions from Deep Models", TPAMI 2021, §4.1.2.
    """
    height, width = images.shape[1:3]
    center = jnp.asarray([(height - 1) / 2, (width - 1) / 2], jnp.float32)
    inverse = jax.vmap(_inverse_affine, in_axes=(0, 0, 0, None))(
        transforms.scale, transforms.angle, transforms.shift, center)
    warped = jax.vmap(_warp)(_flip(images, transforms.flip), inverse)
    # Bilinear weights sum to 1 only up to rounding; the [0, 1] image contract is exact.
    return jnp.clip(warped, 0.0, 1.0).astype(images.dtype)


def augment_batch(rng: jax.Array, images: jax.Array, config: AugmentConfig) -> jax.Array:
    """Augments every example of a batch with its own random transform.

    Jit with `config` static, e.g. `jax.jit(augment_batch, static_argnames="config")`. When every
    transform is off the images are returned as they are, with no computation; with only flips
    on, no warp is done.

    Args:
      rng: PRNG key.
      images: (N, H, W, C) float32, values in [0, 1].
      config: transform ranges.

    Returns:
      (N, H, W, C) augmented images, same dtype, values in [0, 1].

    References:
      Nayak et al., "Mining Data Impressions from Deep Models", TPAMI 2021, §4.1.2.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C); got shape {images.shape}")
    if config.is_identity:
        return images
    transforms = sample_transforms(rng, config, *images.shape[:3])
    return (apply_transforms(images, transforms) if config.has_affine
            else _flip(images, transforms.flip))
