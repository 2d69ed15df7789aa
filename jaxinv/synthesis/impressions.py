"""Data Impressions and Class Impressions: inputs optimised from noise to match soft targets.

References:
  Nayak, Mopuri, Jain, Chakraborty, "Mining Data Impressions from Deep Models as Substitute
  for the Unavailable Training Data", TPAMI 2021, eq. 2 and Appendix A; Nayak et al.,
  "Zero-Shot Knowledge Distillation in Deep Networks", ICML 2019.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxinv import losses
from jaxinv.synthesis.runner import SynthesisMethod, clip_to_unit_box
from jaxinv.teacher import Teacher


def impressions_schedule(learning_rate: float, num_steps: int, schedule: str) -> optax.Schedule:
    """The learning-rate schedule of the synthesis Adam ("linear" decay in the paper's §4.1.3)."""
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}.")
    if schedule == "linear":
        return optax.linear_schedule(learning_rate, 0.0, num_steps)
    if schedule == "cosine":
        return optax.cosine_decay_schedule(learning_rate, num_steps)
    if schedule == "constant":
        return optax.constant_schedule(learning_rate)
    raise ValueError(f"Unknown schedule {schedule!r}; use 'linear', 'cosine' or 'constant'.")


def impressions_method(teacher: Teacher, *, temperature: float = 20.0, num_steps: int = 1500,
                       learning_rate: float = 0.05, schedule: str = "linear",
                       pixel_l2: float = 0.0, pixel_l1: float = 0.0, tv_l2: float = 0.0,
                       jitter: int = 0, init_resolution: int | None = None,
                       name: str = "data_impressions") -> SynthesisMethod:
    """x̄ = argmin_x CE(y, softmax(T(x)/τ)) + λ‖x‖² + γ‖x‖₁ + μ·TV²(x) from noise, Adam, clip.

    With Dirichlet targets this synthesises Data Impressions; with one-hot targets, Class
    Impressions (Appendix A shows that CE to a one-hot target is logit maximisation at τ).
    Needs only input gradients, so any differentiable teacher works.

    Args:
      teacher: the frozen classifier; images (H, W, C) in [0, 1].
      temperature: τ > 0 (the paper uses 20).
      num_steps: Adam iterations per example (the paper uses 1500).
      learning_rate: initial Adam step size on pixels in [0, 1].
      schedule: "linear" (decay to 0, as the paper), "cosine" or "constant".
      pixel_l2: λ ≥ 0, a squared-L2 prior on the pixels of each impression. The paper's
        objective is λ = 0. Without it, impressions of a digit teacher settle at mid-grey
        saturated noise (mean pixel ~0.5); a small λ pulls them towards a dark background, like
        the digits the teacher saw, and students distilled on them generalise far better
        (BENCHMARKS.md, "Ablation: teacher augmentation and the image priors").
      pixel_l1: γ ≥ 0, an L1 prior on the pixels, not in the paper either. On pixels in [0, 1]
        it pulls every pixel down by the same amount, so with the clip the background goes to
        exactly 0 and only the pixels the teacher needs stay bright: sparse strokes, as in
        real digits. 0 turns it off.
      tv_l2: μ ≥ 0, weight of the squared total variation of each impression
        (`losses.total_variation_l2`), a smoothness prior that is not in the paper either; 0
        turns it off.
      jitter: J ≥ 0, not in the paper either: at every step each impression is rolled by its
        own random shift in [-J, J] pixels along both axes before the teacher sees it, so that
        only patterns the teacher recognises wherever they sit survive. 0 turns it off.
      init_resolution: R, the side of the uniform noise an impression starts from, resized
        bilinearly to the teacher's input: spatially smoother noise, still within [0, 1].
        None (or the input's own side) is the paper's pixel-wise noise. Not in the paper;
        BENCHMARKS.md (zskd_fashion_mnist) has its effect on Fashion-MNIST.

    References:
      Nayak et al., TPAMI 2021, eq. 2 and Algorithm 1; random jitter as in Yin et al.,
      "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion", CVPR 2020.
    """
    if temperature <= 0:
        raise ValueError(f"temperature τ must be > 0, got {temperature}; the paper uses 20.")
    if pixel_l2 < 0:
        raise ValueError(f"pixel_l2 λ must be ≥ 0, got {pixel_l2}; 0 is the paper's objective.")
    if pixel_l1 < 0:
        raise ValueError(f"pixel_l1 γ must be ≥ 0, got {pixel_l1}; 0 is the paper's objective.")
    if tv_l2 < 0:
        raise ValueError(f"tv_l2 μ must be ≥ 0, got {tv_l2}; 0 is the paper's objective.")
    if not isinstance(jitter, int) or isinstance(jitter, bool) or jitter < 0:
        raise ValueError(f"jitter must be a whole number of pixels ≥ 0, got {jitter!r}; 0 is "
                         "the paper's objective.")

    height, width, channels = teacher.image_shape
    if init_resolution is not None and (
            not isinstance(init_resolution, int) or isinstance(init_resolution, bool)
            or not 1 <= init_resolution <= min(height, width)):
        raise ValueError(f"init_resolution must be a whole number of pixels in [1, "
                         f"{min(height, width)}] (the teacher takes {height}x{width} images), "
                         f"got {init_resolution!r}; None starts from pixel-wise noise.")
    noise_shape = (height, width) if init_resolution is None else (init_resolution,) * 2

    def init_fn(rng: jax.Array, targets: jax.Array) -> jax.Array:
        noise = jax.random.uniform(rng, (targets.shape[0], *noise_shape, channels))
        if noise_shape == (height, width):
            return noise
        # Bilinear weights are convex, so the smooth noise stays in [0, 1].
        return jax.image.resize(noise, (targets.shape[0], height, width, channels), "bilinear")

    def loss_fn(teacher_variables: dict, images: jax.Array, targets: jax.Array,
                rng: jax.Array) -> jax.Array:
        seen = images
        if jitter:
            shift = jax.random.randint(rng, (2,), -jitter, jitter + 1)
            seen = jnp.roll(images, (shift[0], shift[1]), axis=(-3, -2))
        logits = teacher.logits(seen, teacher_variables)
        # |x| = x on [0, 1], where the clip keeps the pixels.
        prior = (pixel_l2 * jnp.sum(images ** 2) + pixel_l1 * jnp.sum(images)
                 + tv_l2 * losses.total_variation_l2(images).sum())
        return losses.soft_cross_entropy(logits, targets, temperature).sum() + prior

    # Workdirs recorded before pixel_l1, tv_l2, jitter or init_resolution existed still
    # resume: see `workdir.KEYS_ADDED_LATER`.
    config = {"temperature": temperature, "num_steps": num_steps,
              "learning_rate": learning_rate, "schedule": schedule, "pixel_l2": pixel_l2,
              "pixel_l1": pixel_l1, "tv_l2": tv_l2, "jitter": jitter,
              "init_resolution": init_resolution}
    return SynthesisMethod(
        name=name, init_fn=init_fn, loss_fn=loss_fn,
        optimizer=optax.adam(impressions_schedule(learning_rate, num_steps, schedule)),
        num_steps=num_steps, project_fn=clip_to_unit_box, config=config)
