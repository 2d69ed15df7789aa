"""Class activation maps (CAMs) and SpaceshipNet's multi-scale activation region constraint.

SpaceshipNet distils not only the teacher's outputs but where in the image it looks: at each of
several stages, the student's CAM for a class should equal the teacher's (mSARC, eq. A1).

- After the last stage (the input of the global average pooling), the CAM of Zhou et al.
  (eq. A2): the final dense layer's weights applied to the feature map as a 1x1 convolution,
  :func:`head_cam`. Its spatial mean plus the head's bias is the logit, so it says which
  positions make up the class score.
- After a shallower stage, a Grad-CAM (eq. A3), :func:`grad_cam`: the channels weighted by the
  gradient of the class score (before the softmax) with respect to that stage's feature map,
  averaged over positions (Selvaraju et al.'s α; the supplement gives only ∂y^c/∂f_p, the
  authors' code averages it over space). The weights are constants: gradients flow to the
  feature map, not through the weights (the authors' code takes them from a backward hook).
  :func:`grad_cam` re-runs the rest of the network from the stage (a `head_fn`);
  :func:`grad_cam_from_gradient` takes the gradient instead, for all stages from one backward
  pass through a model that marks its stages with flax's `self.perturb`.

The supplement names no ReLU and no normalisation of the CAMs for the loss, and the authors'
code applies none: the CAMs here are the raw weighted sums, signed and unscaled. Table C's
metric, :func:`cam_difference`, resizes and rescales them to [0, 255] as the supplement says.

Which stages (supplement §A.1, Table A): the maps a model marks with
:func:`jaxinv.models.stages.mark_stage`, Grad-CAMs of all but the last and the CAM (eq. A2)
of the last. ResNet: stages 1–3 and stage 4; WRN: its three stages and the BN-ReLU after them
(L5); VGG: its four stages of distinct sizes (on CIFAR its fourth and fifth stage share 4x4,
and the fifth is the one pooled); the BN CNN: its four convolutions. The authors' code
computes every Grad-CAM, the student's too, for the teacher's argmax class, and the last
stage's CAM for every class (all K maps in one MSE); :func:`stage_cams` does the same.

References:
  Yu et al., "Data-Free Knowledge Distillation via Feature Exchange and Activation Region
  Constraint" (SpaceshipNet), CVPR 2023, supplement §A.1 (eqs. A1–A3) and §B.1 (Table C);
  Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016 (CAM);
  Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
  Localization", ICCV 2017.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxinv.models.stages import STAGES


def head_cam(feature_map: jax.Array, head_kernel: jax.Array,
             classes: jax.Array | None = None) -> jax.Array:
    """The CAM of the last stage (eq. A2): Σ_p w_p^c f_p, the head as a 1x1 convolution.

    The head's bias is left out (as Zhou et al. and the authors' bias-free 1x1 convolution
    do): for a head that is global average pooling then Dense, the CAM's spatial mean plus
    bias[c] is the logit of class c.

    Args:
      feature_map: (N, h, w, D), the input of the global average pooling.
      head_kernel: (D, K), the final nn.Dense's kernel (flax layout); (1, 1, D, K), a 1x1
        nn.Conv's, is read the same way (`Teacher.head()` returns either).
      classes: (N,) ints in [0, K), the class of each example's map; None for all K.

    Returns:
      (N, h, w) CAMs of `classes`, or (N, h, w, K) with None; unbounded, signed.

    References:
      Zhou et al., CVPR 2016, eq. 2; Yu et al., CVPR 2023, supplement eq. A2 and §A.1 (i).
    """
    kernel = head_kernel.reshape(head_kernel.shape[-2:])
    if classes is None:
        return jnp.einsum("nhwd,dk->nhwk", feature_map, kernel)
    # Only the N needed columns, not all K maps: K can be 100 or 1000.
    return jnp.einsum("nhwd,nd->nhw", feature_map, kernel.T[classes])


def grad_cam_weights(feature_map: jax.Array, head_fn: Callable[[jax.Array], jax.Array],
                     classes: jax.Array) -> jax.Array:
    """Grad-CAM's channel weights α_p^c: the spatial mean of ∂y^c / ∂f_p, held constant.

    The gradient is the pull-back of one-hot(classes) through `head_fn`, as the authors'
    `autograd.grad(outputs, ..., grad_outputs=one_hot)`: for a `head_fn` that treats examples
    independently (BatchNorm with running statistics), example n's row is the gradient of its
    own score y_n^{c_n}.

    Args:
      feature_map: (N, h, w, D), a stage's output.
      head_fn: the rest of the network, feature_map (N, h, w, D) -> logits (N, K) (before the
        softmax).
      classes: (N,) ints in [0, K); SpaceshipNet uses the teacher's argmax for teacher and
        student alike.

    Returns:
      (N, D) weights, under `jax.lax.stop_gradient`: no gradient flows through them.

    References:
      Selvaraju et al., ICCV 2017, eq. 1; Yu et al., CVPR 2023, supplement eq. A3.
    """
    # Constants: the weights' own dependence on the input is not part of the loss.
    feature_map = jax.lax.stop_gradient(feature_map)
    logits, pull_back = jax.vjp(head_fn, feature_map)
    (gradient,) = pull_back(jax.nn.one_hot(classes, logits.shape[-1], dtype=logits.dtype))
    spatial = tuple(range(1, feature_map.ndim - 1))
    return jax.lax.stop_gradient(gradient.mean(axis=spatial))


def grad_cam(feature_map: jax.Array, head_fn: Callable[[jax.Array], jax.Array],
             classes: jax.Array) -> jax.Array:
    """The Grad-CAM of a stage (eq. A3): Σ_p α_p^c f_p, with α from :func:`grad_cam_weights`.

    No ReLU (the supplement names none and the authors' loss applies none, unlike Selvaraju
    et al.'s visualisations). Gradients flow to `feature_map` through f_p only. For a head that
    is global average pooling then Dense, α = kernel[:, c] / (h w), so this is
    head_cam(feature_map, kernel, classes) / (h w).

    Args:
      feature_map: (N, h, w, D), a stage's output.
      head_fn: the rest of the network, feature_map -> logits (N, K).
      classes: (N,) ints in [0, K).

    Returns:
      (N, h, w) CAMs; unbounded, signed.

    References:
      Selvaraju et al., ICCV 2017, eq. 2 (without its ReLU); Yu et al., CVPR 2023, eq. A3.
    """
    weights = grad_cam_weights(feature_map, head_fn, classes)
    return jnp.einsum("nhwd,nd->nhw", feature_map, weights)


def grad_cam_from_gradient(feature_map: jax.Array, gradient: jax.Array) -> jax.Array:
    """The Grad-CAM of a stage from a gradient already taken: Σ_p mean(∂y^c/∂f_p) f_p.

    For gradients of every stage from one backward pass, as the authors' hooks take them: a
    model that marks its stage outputs with `x = self.perturb(name, x)` gives ∂y/∂f of each as
    the gradient of Σ_n y_n^{c_n} with respect to its zero "perturbations" (flax's
    `Module.perturb`), with no `head_fn` re-running the network from each stage.

    Args:
      feature_map: (N, h, w, D), a stage's output.
      gradient: (N, h, w, D), the gradient of each example's class score with respect to it;
        held constant.

    Returns:
      (N, h, w) CAMs, equal to :func:`grad_cam` of the same stage and classes.

    References:
      Selvaraju et al., ICCV 2017, eqs. 1–2 (without the ReLU); Yu et al., CVPR 2023, eq. A3.
    """
    spatial = tuple(range(1, feature_map.ndim - 1))
    weights = jax.lax.stop_gradient(gradient.mean(axis=spatial))
    return jnp.einsum("nhwd,nd->nhw", feature_map, weights)


def stage_cams(apply: Callable, variables: dict, images: jax.Array, *,
               classes: jax.Array | None = None, train: bool = False
               ) -> tuple[jax.Array, list[jax.Array], dict]:
    """The logits and every marked stage's CAM of a model, from one forward and one backward.

    Args:
      apply: `(variables, images, *, train, mutable) -> (logits, state)` of a model that marks
        its stages (:func:`jaxinv.models.apply_fn` of one) and has a dense layer `head`.
      variables: its {"params", "batch_stats"}.
      images: (N, H, W, C).
      classes: (N,) the class of each example's Grad-CAMs (the teacher's argmax, passed to
        the student's); None takes this model's own argmax.
      train: batch statistics, updated in the returned state (the student's step).

    Returns:
      logits (N, K); CAMs: Grad-CAMs (N, h_s, w_s) of every stage but the last, then the last
      stage's CAMs of every class (N, h, w, K) with the head's kernel held constant (the
      supplement copies it into a 1x1 convolution); and the apply's mutable state
      (intermediates, and batch_stats when `train`). Everything but the Grad-CAM weights and
      the head kernel is differentiable with respect to `variables["params"]`.

    Raises:
      ValueError: the model marks fewer than two stages.
    """
    mutable = ["intermediates", "batch_stats"] if train else ["intermediates"]
    shapes = jax.eval_shape(lambda v: apply(v, images, train=train,
                                            mutable=[*mutable, "perturbations"])[1],
                            variables).get("perturbations", {})
    if len(shapes) < 2:
        raise ValueError("mSARC compares the CAMs of at least two stages, but the model marks "
                         f"{len(shapes)}; mark its stage outputs with "
                         "jaxinv.models.stages.mark_stage (ResNet, WRN, VGG and the BN CNN do).")
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def score(perturbations):
        logits, state = apply({**variables, "perturbations": perturbations}, images,
                              train=train, mutable=mutable)
        chosen = jnp.argmax(logits, -1) if classes is None else classes
        picked = jnp.take_along_axis(logits, jax.lax.stop_gradient(chosen)[:, None], axis=-1)
        return picked.sum(), (logits, state)

    gradients, (logits, state) = jax.grad(score, has_aux=True)(zeros)
    maps = state["intermediates"][STAGES]
    cams = [grad_cam_from_gradient(maps[index], gradients[f"stage{index + 1}"])
            for index in range(len(maps) - 1)]
    kernel = jax.lax.stop_gradient(variables["params"]["head"]["kernel"])
    cams.append(head_cam(maps[-1], kernel, None))
    return logits, cams, state


def _resize_maps(cams: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of (N, h, w, ...) maps to (N, *size, ...); a no-op at the same size."""
    if tuple(cams.shape[1:3]) == tuple(size):
        return cams
    return jax.image.resize(cams, (cams.shape[0], *size, *cams.shape[3:]), "bilinear")


def msarc_loss(teacher_cams: Sequence[jax.Array], student_cams: Sequence[jax.Array]
               ) -> jax.Array:
    """mSARC (eq. A1): Σ over stages of the mean squared error between the student's and the
    teacher's CAMs.

    Each stage's error is a mean over examples, positions (and classes), as the authors'
    `nn.MSELoss()`. The teacher's CAMs are constants. Where a stage's maps differ in size
    between teacher and student, the student's are resized to the teacher's with
    `jax.image.resize` "bilinear" (its default antialiasing averages when shrinking); the
    paper's pairs (ResNet-34/18, WRN-40-2/16-2, VGG-11 students) never need it.

    Args:
      teacher_cams: per stage, (N, h_s, w_s) (one class per example) or (N, h_s, w_s, K)
        (all classes, as the authors' last-stage term).
      student_cams: the same stages, in the same order, each (N, h'_s, w'_s[, K]).

    Returns:
      Scalar, ≥ 0; zero when the student's maps equal the teacher's.

    Raises:
      ValueError: the lists differ in length, or a stage's maps differ other than in h, w.

    References:
      Yu et al., CVPR 2023, supplement eq. A1.
    """
    if len(teacher_cams) != len(student_cams):
        raise ValueError(f"mSARC compares stage by stage, but got {len(teacher_cams)} teacher "
                         f"and {len(student_cams)} student CAMs.")
    total = jnp.zeros((), jnp.float32)
    for stage, (teacher, student) in enumerate(zip(teacher_cams, student_cams, strict=True)):
        if (teacher.ndim != student.ndim or teacher.shape[0] != student.shape[0]
                or teacher.shape[3:] != student.shape[3:]):
            raise ValueError(f"Stage {stage}: teacher CAMs {teacher.shape} and student CAMs "
                             f"{student.shape} differ in more than their spatial size.")
        student = _resize_maps(student, teacher.shape[1:3])
        total = total + jnp.mean((student - jax.lax.stop_gradient(teacher)) ** 2)
    return total


def _to_image_scale(cams: jax.Array, size: tuple[int, int]) -> jax.Array:
    """(N, h, w, ...) -> (N, *size, ...) bilinear, then each map min-max scaled to [0, 255];
    a constant map becomes 0."""
    maps = _resize_maps(jnp.asarray(cams, jnp.float32), size)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    flat = span <= 0
    return jnp.where(flat, 0.0, (maps - low) / jnp.where(flat, 1.0, span) * 255.0)


def cam_difference(teacher_cams: jax.Array, student_cams: jax.Array,
                   image_size: int | tuple[int, int]) -> dict[str, jax.Array]:
    """Table C's CAM difference: MAE and MSE between teacher and student CAMs on the image's
    pixel grid, each CAM resized and rescaled to [0, 255].

    As the supplement orders it: each CAM is resized (bilinear) to the image's size, then
    min-max rescaled to [0, 255] on its own; the errors are means over examples and pixels.
    Unlike Zhou et al.'s code, the maps are not rounded to uint8, and a constant map (no
    range to rescale) counts as all zeros. Which class each CAM is of is the caller's choice
    (Table C computes them "using [8]", the last stage's CAM of :func:`head_cam`).

    Args:
      teacher_cams: (N, h, w) (or (N, h, w, K): each of the K maps rescaled on its own).
      student_cams: (N, h', w'[, K]), the same examples and classes.
      image_size: H or (H, W) of the images.

    Returns:
      {"mae": scalar in [0, 255], "mse": scalar in [0, 255²]}; both 0 for equal CAMs (and
      for CAMs equal up to a positive scale and shift).

    References:
      Yu et al., CVPR 2023, supplement §B.1 and Table C; Zhou et al., CVPR 2016.
    """
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    difference = _to_image_scale(teacher_cams, size) - _to_image_scale(student_cams, size)
    return {"mae": jnp.mean(jnp.abs(difference)), "mse": jnp.mean(difference**2)}
