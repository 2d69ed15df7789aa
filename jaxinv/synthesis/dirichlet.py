"""Class similarity and Dirichlet-sampled softmax targets for Data Impressions.

Data Impressions model the softmax outputs of each class k as Dir(β·c_k), where c_k is row k of
a class-similarity matrix read off the teacher's final layer. Class Impressions are the one-hot
limit of the same recipe (β → 0). Everything here is a pure function of arrays; callers pass the
teacher's head kernel (or features) themselves.

References:
  Nayak, Mopuri, Jain, Chakraborty, "Mining Data Impressions from Deep Models as Substitute for
  the Unavailable Training Data", IEEE TPAMI 2021, §3.1, §3.2, Appendices A and B.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Guards divisions by vector norms and row ranges. Far below any meaningful norm or cosine gap in
# float32, so it only matters for exactly-zero (dead) class templates or features.
_EPS = 1e-12


def _is_concrete(x) -> bool:
    """True when `x` holds values (not a tracer), so value checks can run."""
    return not isinstance(x, jax.core.Tracer)


def _min_max_rows(matrix: jax.Array) -> jax.Array:
    """Maps each row affinely onto [0, 1]; a constant row (no contrast) becomes all ones.

    A constant row says every class is equally similar, so all ones (a uniform concentration)
    keeps that meaning instead of dividing by zero.
    """
    row_min = matrix.min(axis=-1, keepdims=True)
    row_range = matrix.max(axis=-1, keepdims=True) - row_min
    return jnp.where(row_range > 0, (matrix - row_min) / jnp.maximum(row_range, _EPS), 1.0)


def class_similarity(head_kernel: jax.Array, *, normalize: bool = True) -> jax.Array:
    """Class-similarity matrix C(i, j) = cos(w_i, w_j) from the teacher's final-layer weights.

    The class templates w_k are the columns of the final kernel. The bias does not enter: eq. 1
    compares templates only, since a bias shifts a class's logit for every input alike and says
    nothing about which classes look alike.

    Args:
      head_kernel: final classifier kernel, (D, K) for a dense layer (flax layout: features ×
        classes) or (1, 1, D, K) for a 1×1 convolution head. Any float dtype; computed in float32.
      normalize: if True, min-max normalise each row (§3.1) so that entries lie in [0, 1], each
        row's minimum is 0 and the diagonal is 1. If False, return the raw cosines.

    Returns:
      (K, K) float32. Raw: symmetric, values in [-1, 1], unit diagonal. Normalised: rows in
      [0, 1] with unit diagonal (no longer symmetric in general).

    References:
      Nayak et al., "Mining Data Impressions from Deep Models", TPAMI 2021, §3.1, eq. 1.
    """
    shape = tuple(head_kernel.shape)
    if len(shape) == 4 and shape[:2] == (1, 1):
        head_kernel = head_kernel.reshape(shape[2:])
    elif len(shape) != 2:
        raise ValueError(
            "the teacher's final layer must be a dense (D, K) or 1x1 conv (1, 1, D, K) kernel; "
            f"got shape {shape}")
    templates = jnp.asarray(head_kernel, jnp.float32)
    norms = jnp.linalg.norm(templates, axis=0, keepdims=True)
    unit = templates / jnp.maximum(norms, _EPS)
    # Rounding can push cosines a hair outside [-1, 1] and the diagonal off 1; both are exact
    # by definition.
    cosine = jnp.clip(unit.T @ unit, -1.0, 1.0)
    cosine = jnp.fill_diagonal(cosine, 1.0, inplace=False)
    return _min_max_rows(cosine) if normalize else cosine


def concentration(similarity: jax.Array, beta: float, *, floor: float = 1e-3) -> jax.Array:
    """Dirichlet concentration α^k = β · max(c_k, floor) for every class k (one row each).

    Min-max normalisation makes each row's smallest entry exactly 0, which is not a valid
    Dirichlet concentration (every α_i must be > 0), so entries are floored at `floor`. The floor
    keeps the least similar class possible but very unlikely.

    Args:
      similarity: (K, K) normalised class similarity, entries ≥ 0 (e.g. `class_similarity`).
      beta: scaling factor β > 0 (Python float). Small β gives sparse, peaky targets; large β
        gives targets near the mean c_k / Σ c_k. The paper uses {1.0, 0.1}.
      floor: smallest allowed similarity entry, in (0, 1).

    Returns:
      (K, K) float32 concentrations, all > 0; row k parameterises class k.

    References:
      Nayak et al., "Mining Data Impressions from Deep Models", TPAMI 2021, §3.1-3.2, Alg. 1.
    """
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"β must be > 0 (the paper uses {{1.0, 0.1}}); got {beta}")
    if not (math.isfinite(floor) and 0 < floor < 1):
        raise ValueError(f"floor must be in (0, 1); got {floor}")
    similarity = jnp.asarray(similarity, jnp.float32)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must be a square (K, K) matrix; got shape {similarity.shape}")
    if _is_concrete(similarity):
        if not bool(jnp.all(jnp.isfinite(similarity))):
            raise ValueError("similarity has non-finite entries; check the teacher's head kernel")
        if bool(jnp.any(similarity < 0)):
            raise ValueError("similarity has negative entries; pass the min-max normalised "
                             "matrix (class_similarity(..., normalize=True))")
    return beta * jnp.maximum(similarity, floor)


def _sanitize_samples(samples: jax.Array, alpha: jax.Array) -> jax.Array:
    """Renormalises Dirichlet samples and replaces non-finite rows by the concentration's argmax.

    With tiny concentrations nearly all mass sits on one vertex of the simplex, and the most
    likely vertex is the largest α_i (the class itself for a normalised similarity row), so a
    one-hot there is the natural stand-in for a sample lost to float32 overflow or underflow.

    Args:
      samples: (..., K) Dirichlet samples, possibly with non-finite rows.
      alpha: (..., K) concentrations broadcastable to `samples`.
    """
    num_classes = samples.shape[-1]
    fallback = jax.nn.one_hot(jnp.argmax(alpha, axis=-1), num_classes, dtype=samples.dtype)
    total = samples.sum(axis=-1, keepdims=True)
    ok = jnp.all(jnp.isfinite(samples), axis=-1, keepdims=True) & (total > 0)
    return jnp.where(ok, samples / jnp.where(ok, total, 1.0), fallback)


def check_betas(betas: Sequence[float], num_per_class: int) -> tuple[float, ...]:
    """Validates a β mixture for `num_per_class` targets per class; returns it as floats.

    Raises:
      ValueError: empty mixture, a β that is not > 0, or a count per class that cannot be
        split evenly over the βs.
    """
    betas = tuple(float(b) for b in betas)
    if not betas:
        raise ValueError("betas must hold at least one scaling factor, e.g. [1.0, 0.1]")
    bad = [b for b in betas if not (math.isfinite(b) and b > 0)]
    if bad:
        raise ValueError(f"β must be > 0 (the paper uses {{1.0, 0.1}}); got {bad} in {betas}")
    if num_per_class < len(betas) or num_per_class % len(betas):
        raise ValueError(
            f"num_per_class={num_per_class} must be a positive multiple of len(betas)="
            f"{len(betas)} so every β gets the same number of targets; raise num_per_class to "
            f"a multiple of {len(betas)} or pass fewer betas")
    return betas


def dirichlet_targets(
    rng: jax.Array,
    similarity: jax.Array,
    betas: Sequence[float],
    num_per_class: int,
    *,
    floor: float = 1e-3,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Samples softmax targets y ~ Dir(β·c_k) for every class k and every β (Algorithm 1).

    Each class gets `num_per_class` targets, split evenly across `betas`. jax.random.dirichlet
    samples through log-gamma variates and a softmax, so even β = 0.01 (concentrations ~1e-5)
    gives finite rows; entries may underflow to exact zeros, which is harmless for cross-entropy.
    Rows are still renormalised and any non-finite row replaced (see `_sanitize_samples`).

    Args:
      rng: PRNG key.
      similarity: (K, K) normalised class similarity, entries in [0, 1].
      betas: B scaling factors, each > 0 (the paper uses [1.0, 0.1]).
      num_per_class: targets per class, a multiple of B and ≥ B.
      floor: smallest similarity entry before scaling, in (0, 1); see `concentration`.

    Returns:
      targets: (N, K) float32, non-negative, rows summing to 1, with N = K · num_per_class.
      classes: (N,) int32, the class k each target was drawn for.
      betas_per_example: (N,) float32, the β each target was drawn with.
      Rows are ordered class-major, then by β, then by sample.

    References:
      Nayak et al., "Mining Data Impressions from Deep Models", TPAMI 2021, §3.2, Algorithm 1.
    """
    betas = check_betas(betas, num_per_class)
    # (K, B, K): one concentration vector per (class, β) pair.
    alpha = jnp.stack([concentration(similarity, b, floor=floor) for b in betas], axis=1)
    return _sample_targets(rng, alpha, betas, num_per_class)


def _sample_targets(rng: jax.Array, alpha: jax.Array, betas: tuple[float, ...],
                    num_per_class: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Targets, classes and βs (class-major, then β, then sample) from alpha (K, B, K)."""
    num_classes, num_betas = alpha.shape[:2]
    per_beta = num_per_class // num_betas
    samples = jax.random.dirichlet(rng, alpha[:, :, None, :],
                                   shape=(num_classes, num_betas, per_beta))
    targets = _sanitize_samples(samples, alpha[:, :, None, :]).reshape(-1, num_classes)
    classes = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), num_per_class)
    betas_per_example = jnp.tile(jnp.repeat(jnp.asarray(betas, jnp.float32), per_beta),
                                 num_classes)
    return targets.astype(jnp.float32), classes, betas_per_example


# The offset the released ZSKD code adds to every concentration entry.
RELEASED_OFFSET = 1e-4


def released_concentration(similarity: jax.Array, beta: float) -> jax.Array:
    """The released ZSKD code's concentrations: each row of β·C re-normalised to [0, 1], + 1e-4.

    The code scales the similarity by β and then min-max normalises every row again, so β
    cancels: its "β mixture" is β = 1 in effect, with 1e-4 in place of the paper-faithful floor.

    Args:
      similarity: (K, K) class similarity (`class_similarity`), entries ≥ 0.
      beta: the nominal β > 0; it does not change the result.

    Returns:
      (K, K) float32, rows in [1e-4, 1 + 1e-4].

    References:
      github.com/vcl-iisc/ZSKD, di_generation/dirichmat.py (generateDirch).
    """
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"β must be > 0; got {beta}")
    return _min_max_rows(beta * jnp.asarray(similarity, jnp.float32)) + RELEASED_OFFSET


def released_dirichlet_targets(rng: jax.Array, similarity: jax.Array, betas: Sequence[float],
                               num_per_class: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`dirichlet_targets` with `released_concentration`: same layout, β nominal only."""
    betas = check_betas(betas, num_per_class)
    alpha = jnp.stack([released_concentration(similarity, b) for b in betas], axis=1)
    return _sample_targets(rng, alpha, betas, num_per_class)


def one_hot_targets(num_classes: int, num_per_class: int
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One-hot targets for Class Impressions, the β → 0 limit of Data Impressions.

    Minimising cross-entropy to a one-hot target is logit maximisation of that class (Appendix A),
    so Class Impressions reuse the Data Impressions pipeline with these targets.

    Args:
      num_classes: K ≥ 1.
      num_per_class: targets per class, ≥ 1.

    Returns:
      targets: (N, K) float32 one-hot rows, N = K · num_per_class, class-major.
      classes: (N,) int32.
      betas_per_example: (N,) float32 zeros; 0.0 marks a one-hot target.

    References:
      Nayak et al., "Mining Data Impressions from Deep Models", TPAMI 2021, Appendix A;
      Mopuri et al., "Ask, Acquire, and Attack: Data-free UAP Generation using Class
      Impressions", ECCV 2018.
    """
    if num_classes < 1 or num_per_class < 1:
        raise ValueError(f"num_classes and num_per_class must be ≥ 1; got {num_classes} and "
                         f"{num_per_class}")
    classes = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), num_per_class)
    targets = jax.nn.one_hot(classes, num_classes, dtype=jnp.float32)
    return targets, classes, jnp.zeros(classes.shape, jnp.float32)


def feature_class_similarity(features: np.ndarray | jax.Array, labels: np.ndarray | jax.Array,
                             num_classes: int) -> jax.Array:
    """Class similarity measured on real data: dot products of class means of unit features.

    Appendix B's recipe: L2-normalise each example's pre-softmax features, average them per
    class (labels are the teacher's predictions in the paper), take C_ij = mf_iᵀ mf_j, then
    min-max normalise each row as in §3.1 so the result is comparable with `class_similarity`.
    The class means are not re-normalised (the paper uses the plain dot product), so the
    diagonal is 1 only when a class's mean is at least as long as every other mean it meets.

    Args:
      features: (N, D) pre-softmax features (the teacher's logits or penultimate features).
      labels: (N,) ints in [0, num_classes); every class needs at least one example.
      num_classes: K.

    Returns:
      (K, K) float32 with every row min-max normalised to [0, 1].

    References:
      Nayak et al., "Mining Data Impressions from Deep Models", TPAMI 2021, Appendix B, eq. 1.
    """
    features = jnp.asarray(features, jnp.float32)
    labels = jnp.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D); got shape {features.shape}")
    if labels.shape != features.shape[:1]:
        raise ValueError(f"labels must be (N,) = {features.shape[:1]}; got {labels.shape}")
    if _is_concrete(labels):
        labels_np = np.asarray(labels)
        if not np.issubdtype(labels_np.dtype, np.integer):
            raise ValueError(f"labels must be integers; got dtype {labels_np.dtype}")
        if labels_np.size and (labels_np.min() < 0 or labels_np.max() >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes})")
        missing = np.flatnonzero(np.bincount(labels_np, minlength=num_classes) == 0).tolist()
        if missing:
            raise ValueError(f"classes {missing} have no examples; every class needs at least "
                             "one to have a mean feature (use more data)")
    unit = features / jnp.maximum(jnp.linalg.norm(features, axis=1, keepdims=True), _EPS)
    sums = jax.ops.segment_sum(unit, labels, num_segments=num_classes)
    counts = jax.ops.segment_sum(jnp.ones_like(labels, jnp.float32), labels,
                                 num_segments=num_classes)
    means = sums / jnp.maximum(counts, 1.0)[:, None]
    return _min_max_rows(means @ means.T)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (min-max rows hold exact 0s and 1s)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return ((last - counts + 1 + last) / 2.0)[inverse]


def similarity_agreement(a: np.ndarray | jax.Array, b: np.ndarray | jax.Array, *,
                         include_diagonal: bool = False) -> dict[str, float]:
    """Pearson and Spearman correlation between two (K, K) class-similarity matrices.

    By default only the K(K-1) off-diagonal entries are compared: both matrices have a unit
    diagonal by construction, and those K shared extremes would inflate the correlation without
    saying anything about which classes look alike. The paper does not say which entries it
    used, but its p-values (Appendix B, Tables 1-2) match n = 100 = K² entries for K = 10, i.e.
    the whole matrix; pass `include_diagonal=True` to reproduce that protocol.

    Args:
      a: (K, K) similarity matrix, K ≥ 2.
      b: (K, K) similarity matrix.
      include_diagonal: also compare the K diagonal entries (the paper's protocol).

    Returns:
      {"pearson": r, "spearman": ρ}, Python floats in [-1, 1]; Spearman uses average ranks for
      ties.

    References:
      Nayak et al., "Mining Data Impressions from Deep Models", TPAMI 2021, Appendix B.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be (K, K) with K ≥ 2; got {a.shape} and {b.shape}")
    keep = np.ones(a.shape, bool) if include_diagonal else ~np.eye(a.shape[0], dtype=bool)
    x, y = a[keep], b[keep]
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("similarity matrices must be finite")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError("correlation is undefined when the compared entries of a matrix are "
                         "all equal")
    pearson = float(np.corrcoef(x, y)[0, 1])
    spearman = float(np.corrcoef(_average_ranks(x), _average_ranks(y))[0, 1])
    return {"pearson": pearson, "spearman": spearman}
