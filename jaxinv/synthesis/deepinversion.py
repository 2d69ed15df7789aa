"""DeepInversion: pixels optimised so that a batch matches the teacher's BatchNorm statistics.

Each batch of `batch_size` images (the engine's group: the statistics are the batch's) starts
from uniform noise with one class per image, and Adam minimises

  w_bn · Σ_l (‖μ_l − μ_l,run‖₂ + ‖σ²_l − σ²_l,run‖₂) + w_cls · CE(T(x̃), y)
  + w_tv · mean TV₂(x) + w_l2 · mean ‖x‖²

where x̃ is the batch jittered by one random roll of up to `jitter` pixels (and one random
horizontal flip when `flip`), shared by the batch, as the reference code does; pixels are
clipped to [0, 1] after every step. The last iterate is kept (the reference code means to keep
the best one, but its copy aliases the tensor, so it keeps the last too).

Departures from the reference code, for jaxinv's [0, 1] pixels: pixels start from U(0, 1)
rather than N(0, 1) in the teacher's standardised space, and are clipped. The adaptive variant
(ADI's competition with a student) needs a student trained between batches: it is CMI's
stateful engine (`cmi.py`), not this one.

Config (`synthesis` block, `method="deepinversion"`): num_per_class, batch_size, num_steps,
learning_rate, weights {bn, cls, tv, l2}, jitter, flip.

References:
  Yin, Molchanov, Li, Alvarez, Mallya, Hoiem, Jha and Kautz, "Dreaming to Distill: Data-free
  Knowledge Transfer via DeepInversion", CVPR 2020, eqs. 3-4; the CMI code base
  (zju-vipa/DataFree) for the settings.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxinv import losses
from jaxinv.synthesis import dirichlet
from jaxinv.synthesis.method import SynthesisMethod, grouped_pixel_step, pixels
from jaxinv.teacher import Teacher
from jaxinv.validation import check_loss_weights, is_count

WEIGHTS = ("bn", "cls", "tv", "l2")


def jitter_and_flip(images: jax.Array, rng: jax.Array, *, jitter: int,
                    flip: bool) -> jax.Array:
    """One random roll of up to `jitter` pixels along H and W (and, with `flip`, one horizontal
    flip with probability 1/2), the same for every image of the batch (N, H, W, C)."""
    shift_rng, flip_rng = jax.random.split(rng)
    shifts = jax.random.randint(shift_rng, (2,), -jitter, jitter + 1)
    images = jnp.roll(images, (shifts[0], shifts[1]), axis=(-3, -2))
    if flip:
        images = jnp.where(jax.random.bernoulli(flip_rng), images[..., ::-1, :], images)
    return images


def deepinversion_method(teacher: Teacher, *, batch_size: int = 256, num_steps: int = 1000,
                         learning_rate: float = 0.1, weights: dict | None = None,
                         jitter: int = 4, flip: bool = True,
                         micro_batch: int | None = None) -> SynthesisMethod:
    """DeepInversion as a :class:`SynthesisMethod`; inputs {"targets" (n, K) one-hot}.

    Args:
      teacher: the frozen classifier; it must have BatchNorm layers.
      batch_size: images whose statistics are matched together (the reference: 256).
      num_steps: Adam steps (the reference: 1,000).
      learning_rate: Adam's (β 0.5, 0.99, as the reference), on [0, 1] pixels.
      weights: {"bn", "cls", "tv", "l2"}, each ≥ 0 (the reference: 10, 1, 1e-3, 0).
      jitter: largest roll in pixels (≥ 0).
      flip: random horizontal flips (off for digits).
      micro_batch: see :func:`jaxinv.synthesis.method.group_gradients`.

    Raises:
      TeacherLayerError: the teacher has no BatchNorm layer (names the methods that need none).
    """
    weights = dict(weights or {"bn": 10.0, "cls": 1.0, "tv": 1e-3, "l2": 0.0})
    _check_settings(batch_size, weights, jitter)
    jax.eval_shape(teacher.batchnorm_statistics, jnp.zeros((2, *teacher.image_shape)))

    def init_params(rng: jax.Array, inputs: dict) -> jax.Array:
        return jax.random.uniform(rng, (inputs["targets"].shape[0], *teacher.image_shape))

    def loss_fn(teacher_variables, images, inputs, rng):
        jittered = jitter_and_flip(images, rng, jitter=jitter, flip=flip)
        logits, stats = teacher.batchnorm_statistics(jittered, teacher_variables)
        return (weights["bn"] * losses.batchnorm_statistics_loss(stats)
                + weights["cls"] * losses.soft_cross_entropy(logits, inputs["targets"]).mean()
                + weights["tv"] * losses.total_variation_l2(images).mean()
                + weights["l2"] * losses.image_l2(images).mean())

    init, step = grouped_pixel_step(init_params, loss_fn,
                                    optax.adam(learning_rate, b1=0.5, b2=0.99),
                                    group_size=batch_size, micro_batch=micro_batch)
    config = {"batch_size": batch_size, "num_steps": num_steps, "learning_rate": learning_rate,
              "weights": weights, "jitter": jitter, "flip": flip}
    return SynthesisMethod(name="deepinversion", init=init, step=step, images=pixels,
                           num_steps=num_steps, group_size=batch_size, config=config)


def _check_settings(batch_size, weights: dict, jitter) -> None:
    if not is_count(batch_size, minimum=2):
        raise ValueError(f"synthesis.batch_size must be a whole number ≥ 2 (BatchNorm "
                         f"statistics are a batch's), got {batch_size!r}.")
    check_loss_weights(weights, WEIGHTS)
    if not is_count(jitter, minimum=0):
        raise ValueError(f"synthesis.jitter must be a whole number of pixels ≥ 0, got "
                         f"{jitter!r}.")


def check_config(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
                 num_classes: int) -> None:
    """Refuses settings that cannot run, before a teacher is trained or a file written."""
    del image_shape
    _check_settings(config.batch_size, dict(config.weights), config.jitter)
    for key in ("num_per_class", "num_steps"):
        if not is_count(config[key]):
            raise ValueError(f"synthesis.{key} must be a whole number ≥ 1, got {config[key]!r}.")
    if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
        raise ValueError(f"synthesis.learning_rate must be > 0, got {config.learning_rate}.")
    total = config.num_per_class * num_classes
    if total % config.batch_size:
        raise ValueError(f"synthesis.num_per_class × classes = {total} is not a multiple of "
                         f"batch_size {config.batch_size}; every image needs a whole batch to "
                         "share statistics with.")


def num_examples(config: ml_collections.ConfigDict, num_classes: int) -> int:
    """num_per_class images of every class."""
    return config.num_per_class * num_classes


def build(teacher: Teacher, config: ml_collections.ConfigDict
          ) -> tuple[SynthesisMethod, dict, dict]:
    """The method, inputs {"targets"} and metadata {"class"}; classes are shuffled over the
    examples (seeded), so that every batch holds a mix of classes as the reference's does."""
    targets, classes, _ = dirichlet.one_hot_targets(teacher.num_classes, config.num_per_class)
    order = np.random.default_rng(config.seed).permutation(len(classes))
    method = deepinversion_method(
        teacher, batch_size=config.batch_size, num_steps=config.num_steps,
        learning_rate=config.learning_rate, weights=dict(config.weights), jitter=config.jitter,
        flip=config.flip)
    return (method, {"targets": np.asarray(targets)[order]},
            {"class": np.asarray(classes)[order]})


def smoke_config() -> ml_collections.ConfigDict:
    """A seconds-scale DeepInversion block, for the contract test and smoke runs."""
    return ml_collections.ConfigDict(dict(
        method="deepinversion", num_per_class=16, batch_size=2, num_steps=24,
        learning_rate=0.3, weights={"bn": 0.1, "cls": 1.0, "tv": 1e-3, "l2": 0.0}, jitter=1,
        flip=False, chunk_size=80, steps_per_call=8, seed=0))
