"""Data from Model (DfM): background images nudged by l2-PGD until the teacher gives them
virtual logits.

Each example starts from a substitute background image x_s (another dataset: Fashion-MNIST
for an MNIST teacher) and a virtual logit vector Z_v (§3): the top logit drawn from N(20, 2)
(mean, standard deviation), the other K − 1 from N(m_j, 1) with means m_j equally spaced
over [−3, 3], in a random order per example; the top classes are spread evenly over the
classes. l2-PGD then minimises ‖Z(x) − Z_v‖₂: each step moves x by `step_size` along the
l2-normalised negative gradient, then projects it onto the l2 ball of radius `epsilon`
around x_s and onto [0, 1]. The set is the final x with the teacher's logits on it, from which
a fresh model is trained by the l2 distance of its logits to those (``distill.loss =
"logit_l2"``, DtM).

The paper gives neither ε nor the number of steps: experiments/configs/dfm.py takes 50 steps
of 2.5 ε / 50 (Madry et al.'s step) and the ε that benchmarks/dfm_epsilon.py picks on a
validation split. Only `teacher.logits` is used.

Config (`synthesis` block, `method="dfm"`): num_examples, background (a dataset name),
background_split, epsilon, num_steps, step_size (None: 2.5 ε / num_steps), top_mean,
top_std, spread, other_std.

References:
  Benz, Zhang, Karjauv, Kweon, "Data from Model: Extracting Data from Non-robust and Robust
  Models", CVPR workshops 2020, §3 and §4; Ilyas et al., "Adversarial Examples Are Not Bugs,
  They Are Features", NeurIPS 2019 (the l2-PGD extraction it builds on); Madry et al., ICLR
  2018 (l2-PGD).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxinv import attacks, data
from jaxinv.synthesis.method import SynthesisMethod, group_gradients, pixels
from jaxinv.teacher import Teacher
from jaxinv.validation import is_count

_BACKGROUND_STREAM = 0xDF3


def virtual_logits(rng: np.random.Generator, num_examples: int, num_classes: int, *,
                   top_mean: float = 20.0, top_std: float = 2.0, spread: float = 3.0,
                   other_std: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Virtual logits (N, K) float32 and their top classes (N,) int32.

    Example i's top class is i mod K (spread evenly over the classes, every run of K examples
    holding each once); its logit is drawn from N(top_mean, top_std²), the others from
    N(m_j, other_std²) with m_j = linspace(−spread, spread, K − 1), assigned to the other
    classes in a random order.
    """
    classes = (np.arange(num_examples) % num_classes).astype(np.int32)
    means = np.linspace(-spread, spread, num_classes - 1)
    logits = np.empty((num_examples, num_classes), np.float32)
    for i, top in enumerate(classes):
        others = np.delete(np.arange(num_classes), top)
        logits[i, rng.permutation(others)] = rng.normal(means, other_std)
        logits[i, top] = rng.normal(top_mean, top_std)
    return logits, classes


def dfm_method(teacher: Teacher, *, epsilon: float = 3.0, num_steps: int = 20,
               step_size: float | None = None, micro_batch: int | None = None
               ) -> SynthesisMethod:
    """DfM as a :class:`SynthesisMethod`; inputs {"targets" (n, K) virtual logits,
    "background" (n, H, W, C) in [0, 1]}.

    Args:
      teacher: the frozen classifier; only `teacher.logits` is used.
      epsilon: ε > 0, the l2 radius around each background image.
      num_steps: l2-PGD steps.
      step_size: the length of each step; None is 2.5 ε / num_steps (Madry et al.).
      micro_batch: see :func:`jaxinv.synthesis.method.group_gradients`.
    """
    _check_settings(epsilon, num_steps, step_size)
    step_size = 2.5 * epsilon / num_steps if step_size is None else step_size

    def loss_fn(teacher_variables, images, inputs, rng):
        del rng
        logits = teacher.logits(images, teacher_variables)
        return jnp.sqrt(jnp.sum((logits - inputs["targets"]) ** 2, axis=-1)).sum()

    losses_and_grads = group_gradients(loss_fn, micro_batch=micro_batch)

    def init(rng: jax.Array, inputs: dict) -> dict:
        del rng  # PGD starts at the background itself
        return {"params": inputs["background"], "inputs": inputs}

    def step(state: dict, teacher_variables, rng: jax.Array) -> tuple[dict, dict]:
        images, inputs = state["params"], state["inputs"]
        example_losses, grads = losses_and_grads(teacher_variables, images, inputs, rng)
        descent = grads / (attacks.per_example_norm(grads) + 1e-12)
        images = attacks.project(images - step_size * descent, inputs["background"], "l2",
                                 epsilon)
        return ({"params": images, "inputs": inputs},
                {"loss": example_losses.sum() / images.shape[0]})

    config = {"epsilon": epsilon, "num_steps": num_steps, "step_size": step_size}
    return SynthesisMethod(name="dfm", init=init, step=step, images=pixels,
                           num_steps=num_steps, config=config)


def _check_settings(epsilon, num_steps, step_size) -> None:
    if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"synthesis.epsilon (the l2 radius around each background image) "
                         f"must be > 0, got {epsilon!r}.")
    if not is_count(num_steps):
        raise ValueError(f"synthesis.num_steps must be a whole number ≥ 1, got {num_steps!r}.")
    if step_size is not None and not (math.isfinite(step_size) and step_size > 0):
        raise ValueError(f"synthesis.step_size must be > 0, or None for 2.5 ε / num_steps; got "
                         f"{step_size!r}.")


def background_images(name: str, split: str, num_examples: int,
                      image_shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """`num_examples` images of dataset `name` at the teacher's `image_shape`, in a seeded
    order; a set smaller than `num_examples` repeats (each repeat gets fresh virtual logits).

    Raises:
      ValueError: the dataset's images have another shape or channel count than the teacher's.
    """
    check_background(name, image_shape)
    dataset = data.load_dataset(name, split, image_size=image_shape[0])
    order = np.random.default_rng([seed, _BACKGROUND_STREAM]).permutation(len(dataset.images))
    return dataset.images[np.resize(order, num_examples)]


def check_background(name: str, image_shape: tuple[int, int, int]) -> None:
    """Refuses a background dataset whose images, resized to the teacher's side, would still
    differ from `image_shape` (another channel count), saying what to pick instead."""
    height, width, channels = image_shape
    shape = data.image_shape(name, height)
    if shape[:2] != (height, width) or shape[2] != channels:
        raise ValueError(
            f"The background set {name!r} has images of {shape[2]} channel(s), but the teacher "
            f"takes {tuple(image_shape)}. Pick a background dataset with {channels} "
            "channel(s): colour sets have grey variants (e.g. svhn_gray), and every set is "
            f"resized to the teacher's {height}x{width}.")


def check_config(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
                 num_classes: int) -> None:
    """Refuses settings that cannot run, before a teacher is trained or a file written."""
    _check_settings(config.epsilon, config.num_steps, config.step_size)
    check_background(config.background, image_shape)
    if not is_count(config.num_examples):
        raise ValueError(f"synthesis.num_examples must be a whole number ≥ 1, got "
                         f"{config.num_examples!r}.")
    for key in ("top_std", "other_std", "spread"):
        if not (math.isfinite(config[key]) and config[key] >= 0):
            raise ValueError(f"synthesis.{key} must be ≥ 0, got {config[key]}.")
    if num_classes < 2:
        raise ValueError("DfM's virtual logits need at least two classes.")
    chunk_size = config.get("chunk_size")
    if chunk_size is not None and config.num_examples < chunk_size:
        raise ValueError(f"synthesis.num_examples ({config.num_examples}) is smaller than one "
                         f"chunk ({chunk_size}); lower synthesis.chunk_size.")


def num_examples(config: ml_collections.ConfigDict, num_classes: int) -> int:
    """`num_examples` images."""
    del num_classes
    return config.num_examples


def build(teacher: Teacher, config: ml_collections.ConfigDict
          ) -> tuple[SynthesisMethod, dict, dict]:
    """The method, inputs {"targets", "background"} and metadata {"class"}."""
    targets, classes = virtual_logits(
        np.random.default_rng(config.seed), config.num_examples, teacher.num_classes,
        top_mean=config.top_mean, top_std=config.top_std, spread=config.spread,
        other_std=config.other_std)
    background = background_images(config.background, config.background_split,
                                   config.num_examples, tuple(teacher.image_shape), config.seed)
    method = dfm_method(teacher, epsilon=config.epsilon, num_steps=config.num_steps,
                        step_size=config.step_size)
    return method, {"targets": targets, "background": background}, {"class": classes}


def describe(teacher: Teacher, transfer_set, test, figures_dir: str) -> dict:
    """How close the teacher's logits came to the virtual ones: agreement with the top class
    and the mean ‖Z(x) − Z_v‖₂."""
    del teacher, test, figures_dir
    distance = np.linalg.norm(transfer_set.logits - transfer_set.targets, axis=-1)
    return {"top_class_agreement": float(np.mean(
                transfer_set.logits.argmax(-1) == transfer_set.metadata["class"])),
            "mean_logit_distance": float(distance.mean())}


def smoke_config() -> ml_collections.ConfigDict:
    """A seconds-scale DfM block (Fashion-MNIST backgrounds), for the contract test and smoke
    runs."""
    return ml_collections.ConfigDict(dict(
        method="dfm", num_examples=16, background="fashion_mnist", background_split="train",
        epsilon=4.0, num_steps=16, step_size=None, top_mean=20.0, top_std=2.0, spread=3.0,
        other_std=1.0, chunk_size=8, steps_per_call=16, seed=0))
