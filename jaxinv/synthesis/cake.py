"""CAKE: samples contrasted across the teacher's decision boundary, with noise and a TV prior.

Samples start from Gaussian noise in rows of G distinct random classes (a row is the engine's
group). Within a row, the class term keeps each sample on its class's side while the contrastive
term pulls every pair of differently labelled samples together in logit space, so the samples
settle near and along the boundaries between the row's classes; a total-variation prior
smooths them. Only input gradients of the teacher are used: any differentiable `logits_fn`
works, with no BatchNorm statistics, features or last-layer assumption.

Per row of G samples x_i with classes y_i and teacher logits f_i (K classes):

  L = w_cls Σ_i CE(f_i, y_i) + w_contr (1/K) Σ_{i<j} 1[y_i ≠ y_j] ‖f_i − f_j‖² + w_tv mean_i TV(x_i)

and every sample moves by x ← clip(x − η ∇_x L [+ sqrt(2η) ε], 0, 1), ε ~ N(0, I): plain SGD
whose step size is the "implicit" noise (the authors' default), or explicit Langevin dynamics
with the bracketed term (the poster's variant; the poster writes +η∇L for a loss to be
maximised, we minimise). The step size η decays log-linearly across sample sets, as in the
authors' code: set s of S uses η_s = step_size · 10^(−step_decay_decades · s / S), so early
sets roam far and late ones stay near their noise.

Units, against the authors' code: their loss is a mean over the R rows of a set, so their
per-row step is η/R; and they optimise in the teacher's normalised input space (pixels
standardised by the dataset's std σ), where a step of η is a step of η σ² on [0, 1] pixels.
Their MNIST η = 0.1 with sets of 50 rows is therefore step_size = 0.1 σ² / 50 ≈ 1.9e-4 here,
and their N(0, 1) start is N(μ, σ²) here (`init_mean`, `init_std`). Samples are clipped to
[0, 1] after every step (the authors never clip): the TransferSet holds valid images, and the
teacher is optimised on exactly the images it labels.

Config (`synthesis` block, `method="cake"`): group_size (G classes per row), rows_per_set,
num_sets, num_steps (per sample), step_size, step_decay_decades, langevin, weights {cls,
contrastive, tv}, init_mean, init_std.

References:
  Braun, Mundt and Kersting, "Deep Classifier Mimicry without Data Access", AISTATS 2024
  (poster), and their code (ml-research/CAKE, src/sampling.py) for the settings it is silent on.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxinv import losses
from jaxinv.synthesis.method import SynthesisMethod, group_gradients, pixels
from jaxinv.teacher import Teacher
from jaxinv.validation import check_loss_weights, is_count

WEIGHTS = ("cls", "contrastive", "tv")


def step_sizes(step_size: float, decay_decades: float, num_sets: int) -> np.ndarray:
    """η of each sample set: step_size · 10^(−decay_decades · s / num_sets), s = 0 … S − 1.

    Returns:
      (num_sets,) float32, decreasing from `step_size` (constant when decay_decades is 0).
    """
    return (step_size * 10.0 ** (-decay_decades * np.arange(num_sets) / num_sets)
            ).astype(np.float32)


def row_classes(rng: np.random.Generator, num_rows: int, group_size: int,
                num_classes: int) -> np.ndarray:
    """(num_rows, group_size) int32: each row G distinct classes, drawn at random."""
    return np.stack([rng.permutation(num_classes)[:group_size]
                     for _ in range(num_rows)]).astype(np.int32)


def row_loss(logits: jax.Array, targets: jax.Array, images: jax.Array, *, weights: dict
             ) -> jax.Array:
    """The CAKE objective of one row of G samples (see the module docstring).

    Args:
      logits: (G, K) teacher logits.
      targets: (G, K) one-hot classes of the samples.
      images: (G, H, W, C) the samples.
      weights: {"cls", "contrastive", "tv"} ≥ 0.
    """
    classification = losses.soft_cross_entropy(logits, targets).sum()
    differ = 1.0 - targets @ targets.T
    squared = ((logits[:, None, :] - logits[None, :, :]) ** 2).mean(-1)
    # Each unordered pair once: the sum over ordered pairs counts it twice.
    contrastive = 0.5 * (differ * squared).sum()
    smoothness = losses.total_variation_l1(images).mean()
    return (weights["cls"] * classification + weights["contrastive"] * contrastive
            + weights["tv"] * smoothness)


def cake_method(teacher: Teacher, *, group_size: int = 10, num_steps: int = 256,
                langevin: bool = False, weights: dict | None = None, init_mean: float = 0.5,
                init_std: float = 0.5, micro_batch: int | None = None) -> SynthesisMethod:
    """CAKE as a :class:`SynthesisMethod`; inputs {"targets" (n, K) one-hot, "step_size" (n,)}.

    Each example's step size comes with it (its sample set's η), so examples stay independent
    and a row never spans chunks or devices.

    Args:
      teacher: the frozen classifier; only `teacher.logits` is used.
      group_size: G, samples per row; rows hold distinct classes, so 2 ≤ G ≤ K.
      num_steps: SGD (or Langevin) steps per sample (the authors: 256 for MNIST).
      langevin: add sqrt(2η) ε after each gradient step (explicit noise).
      weights: {"cls", "contrastive", "tv"}, each ≥ 0 (the authors' MNIST: 1e3, 1e-3, 1e7).
      init_mean, init_std: the Gaussian the pixels start from, before the clip to [0, 1].
      micro_batch: see :func:`jaxinv.synthesis.method.group_gradients`.
    """
    weights = dict(weights or {"cls": 1e3, "contrastive": 1e-3, "tv": 1e7})
    _check_settings(group_size, teacher.num_classes, weights, init_std)

    def loss_fn(teacher_variables, images, inputs, rng):
        del rng
        return row_loss(teacher.logits(images, teacher_variables), inputs["targets"], images,
                        weights=weights)

    losses_and_grads = group_gradients(loss_fn, group_size=group_size, micro_batch=micro_batch)

    def init(rng: jax.Array, inputs: dict) -> dict:
        num = inputs["targets"].shape[0]
        noise = init_mean + init_std * jax.random.normal(rng, (num, *teacher.image_shape))
        return {"params": jnp.clip(noise, 0.0, 1.0), "inputs": inputs}

    def step(state: dict, teacher_variables, rng: jax.Array) -> tuple[dict, dict]:
        images, inputs = state["params"], state["inputs"]
        loss_rng, noise_rng = jax.random.split(rng)
        group_losses, grads = losses_and_grads(teacher_variables, images, inputs, loss_rng)
        eta = inputs["step_size"].reshape(-1, *([1] * (images.ndim - 1)))
        images = images - eta * grads
        if langevin:
            images = images + jnp.sqrt(2.0 * eta) * jax.random.normal(noise_rng, images.shape)
        return ({"params": jnp.clip(images, 0.0, 1.0), "inputs": inputs},
                {"loss": group_losses.sum() / images.shape[0]})

    config = {"group_size": group_size, "num_steps": num_steps, "langevin": langevin,
              "weights": weights, "init_mean": init_mean, "init_std": init_std}
    return SynthesisMethod(name="cake", init=init, step=step, images=pixels,
                           num_steps=num_steps, group_size=group_size, config=config)


def _check_settings(group_size, num_classes: int, weights: dict, init_std) -> None:
    if not (is_count(group_size, minimum=2) and group_size <= num_classes):
        raise ValueError(f"synthesis.group_size must be a whole number in [2, {num_classes}] "
                         f"(a row holds distinct classes, and the contrastive term needs two); "
                         f"got {group_size!r}.")
    check_loss_weights(weights, WEIGHTS)
    if not (math.isfinite(init_std) and init_std >= 0):
        raise ValueError(f"synthesis.init_std must be ≥ 0, got {init_std}.")


def check_config(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
                 num_classes: int) -> None:
    """Refuses settings that cannot run, before a teacher is trained or a file written."""
    del image_shape
    _check_settings(config.group_size, num_classes, dict(config.weights), config.init_std)
    for key in ("rows_per_set", "num_sets", "num_steps"):
        if not is_count(config[key]):
            raise ValueError(f"synthesis.{key} must be a whole number ≥ 1, got {config[key]!r}.")
    if not (math.isfinite(config.step_size) and config.step_size > 0):
        raise ValueError(f"synthesis.step_size (the noise scale η) must be > 0, got "
                         f"{config.step_size}; the authors start MNIST at 0.1 in their units, "
                         "about 1.9e-4 in jaxinv's (see jaxinv/synthesis/cake.py).")
    if not (math.isfinite(config.step_decay_decades) and config.step_decay_decades >= 0):
        raise ValueError(f"synthesis.step_decay_decades must be ≥ 0 (0: one η for all sets), "
                         f"got {config.step_decay_decades}.")


def num_examples(config: ml_collections.ConfigDict, num_classes: int) -> int:
    """num_sets × rows_per_set × group_size samples."""
    del num_classes
    return config.num_sets * config.rows_per_set * config.group_size


def build(teacher: Teacher, config: ml_collections.ConfigDict
          ) -> tuple[SynthesisMethod, dict, dict]:
    """The method, inputs {"targets", "step_size"} and metadata {"class", "set", "step_size"}."""
    num_rows = config.num_sets * config.rows_per_set
    classes = row_classes(np.random.default_rng(config.seed), num_rows, config.group_size,
                          teacher.num_classes).reshape(-1)
    sets = np.repeat(np.arange(config.num_sets, dtype=np.int32),
                     config.rows_per_set * config.group_size)
    eta = step_sizes(config.step_size, config.step_decay_decades, config.num_sets)[sets]
    method = cake_method(teacher, group_size=config.group_size, num_steps=config.num_steps,
                         langevin=config.langevin, weights=dict(config.weights),
                         init_mean=config.init_mean, init_std=config.init_std)
    targets = np.eye(teacher.num_classes, dtype=np.float32)[classes]
    return (method, {"targets": targets, "step_size": eta},
            {"class": classes, "set": sets, "step_size": eta})


def row_logit_distance(logits: np.ndarray, classes: np.ndarray, group_size: int) -> float:
    """Mean squared teacher-logit distance between differently labelled samples of a row.

    Args:
      logits: (N, K) in row order, N a multiple of `group_size`.
      classes: (N,) int.
    """
    rows = logits.reshape(-1, group_size, logits.shape[-1])
    row_classes_ = classes.reshape(-1, group_size)
    squared = ((rows[:, :, None] - rows[:, None]) ** 2).sum(-1)
    differ = row_classes_[:, :, None] != row_classes_[:, None]
    return float(squared[differ].mean())


def describe(teacher: Teacher, transfer_set, test, figures_dir: str) -> dict:
    """Where the samples sit: the teacher's agreement with their classes, its confidence and
    the logit distance of differently labelled pairs, overall and per tenth of the sets (η
    decays across them)."""
    del teacher, test, figures_dir
    group_size = transfer_set.config["group_size"]
    classes, sets = transfer_set.metadata["class"], transfer_set.metadata["set"]
    confidence = np.asarray(jax.nn.softmax(transfer_set.logits)).max(-1)
    tenth = sets * 10 // (sets.max() + 1)

    def summary(mask):
        return {"agreement": float(np.mean(transfer_set.logits[mask].argmax(-1)
                                           == classes[mask])),
                "confidence": float(confidence[mask].mean()),
                "pair_logit_distance": row_logit_distance(transfer_set.logits[mask],
                                                          classes[mask], group_size)}

    return {**summary(np.ones(len(classes), bool)),
            "by_tenth_of_sets": [summary(tenth == k) for k in np.unique(tenth)]}


def smoke_config() -> ml_collections.ConfigDict:
    """A seconds-scale CAKE block, for the contract test and smoke runs."""
    return ml_collections.ConfigDict(dict(
        method="cake", group_size=2, rows_per_set=4, num_sets=4, num_steps=96, step_size=5.0,
        step_decay_decades=1.0, langevin=False,
        weights={"cls": 1.0, "contrastive": 1e-3, "tv": 0.01}, init_mean=0.5, init_std=0.5,
        chunk_size=16, steps_per_call=32, seed=0))
