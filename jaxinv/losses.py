"""Pure loss terms. Every function maps arrays to a scalar (or per-example) loss, no state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy with integer labels.

    Args:
      logits: (N, K) unnormalised scores.
      labels: (N,) ints in [0, K).
    """
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def soft_cross_entropy(logits: jax.Array, target_probs: jax.Array,
                       temperature: float = 1.0) -> jax.Array:
    """Per-example cross-entropy between target probabilities and softmax(logits / temperature).

    Args:
      logits: (..., K) unnormalised scores.
      target_probs: (..., K) probabilities (non-negative, summing to 1 over K).
      temperature: τ > 0; larger τ softens the prediction.

    Returns:
      (...) per-example loss, ≥ 0 (entropy of the target at the optimum).

    References:
      Nayak et al., "Zero-Shot Knowledge Distillation in Deep Networks", ICML 2019, eq. 2.
    """
    return -jnp.sum(target_probs * jax.nn.log_softmax(logits / temperature, axis=-1), axis=-1)


def distillation_loss(student_logits: jax.Array, teacher_logits: jax.Array,
                      temperature: float, scale_by_t2: bool = True) -> jax.Array:
    """Mean KD loss: cross-entropy from the teacher's to the student's softmax at temperature τ.

    The gradient of the softened loss shrinks as 1/τ², so Hinton et al. multiply by τ² to keep
    its scale independent of τ; `scale_by_t2` makes that choice explicit.

    Args:
      student_logits: (N, K).
      teacher_logits: (N, K); treated as constants.
      temperature: τ > 0 (the Data Impressions paper uses 20).
      scale_by_t2: multiply by τ².

    References:
      Hinton et al., "Distilling the Knowledge in a Neural Network", 2015;
      Nayak et al., ZSKD, eq. 4.
    """
    teacher_probs = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits) / temperature, axis=-1)
    loss = soft_cross_entropy(student_logits, teacher_probs, temperature).mean()
    return loss * temperature**2 if scale_by_t2 else loss


def logit_distance(student_logits: jax.Array, teacher_logits: jax.Array) -> jax.Array:
    """Mean over the batch of ‖s − t‖₂, the l2 distance between logit vectors (N, K); the
    teacher's side is a constant. Data from Model trains its models by it (DtM), matching the
    logits themselves rather than softened probabilities.

    References:
      Benz et al., "Data from Model: Extracting Data from Non-robust and Robust Models", CVPR
      workshops 2020, §3.
    """
    difference = student_logits - jax.lax.stop_gradient(teacher_logits)
    squared = jnp.sum(difference**2, axis=-1)
    # The norm's gradient at 0 is NaN; where the logits already match, zero is the right one.
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0).mean()


def total_variation_l2(images: jax.Array) -> jax.Array:
    """Per-image squared total variation: the sum of squared differences of adjacent pixels.

    A smoothness prior for inverted images; it penalises the pixel-level noise that input
    gradients of a classifier produce.

    Args:
      images: (..., H, W, C).

    Returns:
      (...) per-image penalty, ≥ 0 and 0 only for a constant image.

    References:
      Mahendran and Vedaldi, "Understanding Deep Image Representations by Inverting Them",
      CVPR 2015, eq. 3 (β = 2).
    """
    down = jnp.diff(images, axis=-3)
    right = jnp.diff(images, axis=-2)
    return jnp.sum(down**2, axis=(-3, -2, -1)) + jnp.sum(right**2, axis=(-3, -2, -1))


def total_variation_l1(images: jax.Array) -> jax.Array:
    """Per-image anisotropic total variation: mean |vertical| plus mean |horizontal| differences.

    Each direction's absolute differences are averaged over its positions and the channels, so
    the penalty does not grow with the resolution (the CAKE poster's TV prior, as its authors'
    code reduces it).

    Args:
      images: (..., H, W, C).

    Returns:
      (...) per-image penalty, ≥ 0 and 0 only for a constant image.

    References:
      Rudin, Osher and Fatemi, "Nonlinear total variation based noise removal algorithms", 1992;
      Braun, Mundt and Kersting, "Deep Classifier Mimicry without Data Access", AISTATS 2024.
    """
    down = jnp.abs(jnp.diff(images, axis=-3)).mean(axis=(-3, -2, -1))
    right = jnp.abs(jnp.diff(images, axis=-2)).mean(axis=(-3, -2, -1))
    return down + right


def double_distillation_loss(logits: jax.Array, old_logits: jax.Array,
                             new_logits: jax.Array) -> jax.Array:
    """Mean squared error from a consolidated model's logits to its two teachers', centred.

    The target concatenates the old model's logits over the old classes and the new model's
    over the new classes, each minus its own mean over its own classes (the class axis), so
    that the two heads' arbitrary offsets do not bias either side.

    Args:
      logits: (N, K_old + K_new) of the consolidated model.
      old_logits: (N, K_old); new_logits: (N, K_new); treated as constants.

    Returns:
      Scalar mean over examples and classes, ≥ 0.

    References:
      Zhang et al., "Class-incremental Learning via Deep Model Consolidation", WACV 2020,
      Eq. 4; Nayak et al., "Mining Data Impressions ...", TPAMI 2021, §4.3.
    """
    def centred(x):
        x = jax.lax.stop_gradient(x)
        return x - x.mean(axis=-1, keepdims=True)

    target = jnp.concatenate([centred(old_logits), centred(new_logits)], axis=-1)
    return jnp.mean((logits - target) ** 2)


def batchnorm_statistics_loss(stats: list[dict[str, jax.Array]]) -> jax.Array:
    """Σ over BatchNorm layers of ‖μ − μ_run‖₂ + ‖σ² − σ²_run‖₂ (unsquared norms).

    The distance between a batch's feature statistics at the input of every BN layer and the
    running statistics the teacher stored from its training data.

    Args:
      stats: one dict per BN layer with "mean", "var", "running_mean", "running_var", each
        (C_l,), as :meth:`jaxinv.teacher.Teacher.batchnorm_statistics` returns them.

    Returns:
      Scalar ≥ 0; 0 exactly when every layer's batch statistics equal its running ones.

    References:
      Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion", CVPR
      2020, eq. 4; Fang et al., "Contrastive Model Inversion for Data-Free Knowledge
      Distillation", IJCAI 2021, eq. 1 (the norms as both reference codes take them).
    """
    return sum(_norm(s["mean"] - s["running_mean"]) + _norm(s["var"] - s["running_var"])
               for s in stats)


def _norm(x: jax.Array) -> jax.Array:
    """‖x‖₂ with a zero (not NaN) gradient at x = 0, where a layer of dead units puts it."""
    squared = jnp.sum(x**2)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def adversarial_divergence(teacher_logits: jax.Array, student_logits: jax.Array, *,
                           temperature: float = 1.0, agreeing_only: bool = True) -> jax.Array:
    """−KL(softmax(t/τ) ‖ softmax(s/τ)), averaged over the batch: minimising it makes samples
    on which the student disagrees with the teacher.

    Args:
      teacher_logits, student_logits: (N, K); gradients flow into both (stop them where a
        side is to stay fixed).
      temperature: τ > 0.
      agreeing_only: count only samples whose argmax the two share (CMI's decision-adversarial
        loss, eq. 10), so that samples already across the boundary are not pushed further.

    Returns:
      Scalar ≤ 0.

    References:
      Fang et al., IJCAI 2021, eqs. 3 and 10; Micaelli and Storkey, "Zero-shot Knowledge
      Transfer via Adversarial Belief Matching", NeurIPS 2019.
    """
    log_p = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
    log_q = jax.nn.log_softmax(student_logits / temperature, axis=-1)
    kl = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
    if agreeing_only:
        kl = kl * (teacher_logits.argmax(-1) == student_logits.argmax(-1))
    return -kl.mean()


def jensen_shannon(logits_a: jax.Array, logits_b: jax.Array, *,
                   temperature: float = 1.0) -> jax.Array:
    """Mean Jensen-Shannon divergence between softmax(a/τ) and softmax(b/τ) per example.

    Args:
      logits_a, logits_b: (N, K).

    Returns:
      Scalar in [0, log 2].

    References:
      Yin et al., CVPR 2020, eq. 8 (Adaptive DeepInversion's competition term, τ = 3).
    """
    p = jax.nn.softmax(logits_a / temperature, axis=-1)
    q = jax.nn.softmax(logits_b / temperature, axis=-1)
    m = 0.5 * (p + q)

    def kl(x, y):
        return jnp.sum(jnp.where(x > 0, x * (jnp.log(jnp.maximum(x, 1e-30))
                                             - jnp.log(jnp.maximum(y, 1e-30))), 0.0), axis=-1)

    return (0.5 * (kl(p, m) + kl(q, m))).mean()


def instance_contrastive_loss(anchors: jax.Array, positives: jax.Array, negatives: jax.Array,
                              *, temperature: float = 0.1,
                              negative_mask: jax.Array | None = None) -> jax.Array:
    """InfoNCE instance discrimination: each anchor against its positive and shared negatives.

    Embeddings are L2-normalised, so similarities are cosines (eq. 6). The denominator holds
    the positive and every negative, as the CMI code's cross-entropy over [positive, negatives].

    Args:
      anchors: (N, D); positives: (N, D), row i the other view of anchor i; negatives: (M, D),
        e.g. the other samples of the batch and a memory bank.
      temperature: τ > 0 (CMI: 0.1).
      negative_mask: (M,) bool, False for negatives to leave out (the empty rows of a memory
        bank that is not full yet); None keeps all.

    Returns:
      Scalar ≥ 0.

    References:
      Fang et al., IJCAI 2021, eq. 7; Wu et al., "Unsupervised Feature Learning via
      Non-Parametric Instance Discrimination", CVPR 2018; Oord et al., "Representation
      Learning with Contrastive Predictive Coding", 2018.
    """
    def unit(x):
        # rsqrt of a floored squared norm: a zero vector (an empty bank row through a fresh
        # head) stays zero with a zero gradient, where dividing by a floored norm gives NaN.
        return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x**2, axis=-1, keepdims=True), 1e-24))

    anchors, positives, negatives = unit(anchors), unit(positives), unit(negatives)
    positive = jnp.sum(anchors * positives, axis=-1, keepdims=True)
    similarities = anchors @ negatives.T
    if negative_mask is not None:
        similarities = jnp.where(negative_mask, similarities, -jnp.inf)
    logits = jnp.concatenate([positive, similarities], axis=-1) / temperature
    return -jax.nn.log_softmax(logits, axis=-1)[:, 0].mean()


def image_l2(images: jax.Array) -> jax.Array:
    """Per-image squared L2 norm, a prior against saturated pixels.

    Args:
      images: (..., H, W, C).

    Returns:
      (...) per-image penalty, ≥ 0.

    References:
      Yin et al., CVPR 2020, eq. 3 (R_l2); Mahendran and Vedaldi, CVPR 2015.
    """
    return jnp.sum(images**2, axis=(-3, -2, -1))
