"""Tests for class similarity and Dirichlet targets (Data Impressions §3.1-3.2, Appendices A-B)."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxinv import models
from jaxinv.synthesis import dirichlet, impressions
from jaxinv.teacher import Teacher, TeacherLayerError

K = 10


def _head_kernel(seed: int = 0, features: int = 16, classes: int = K) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (features, classes))


def _entropy(p: jax.Array) -> jax.Array:
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1)


# --- class_similarity ---------------------------------------------------------------------------


def test_raw_similarity_is_symmetric_cosine_with_unit_diagonal():
    kernel = _head_kernel()
    c = dirichlet.class_similarity(kernel, normalize=False)
    chex.assert_shape(c, (K, K))
    chex.assert_trees_all_close(c, c.T, atol=1e-6)
    np.testing.assert_array_equal(np.diag(c), np.ones(K))
    w = np.asarray(kernel, np.float64)
    expected = (w[:, 2] @ w[:, 5]) / (np.linalg.norm(w[:, 2]) * np.linalg.norm(w[:, 5]))
    np.testing.assert_allclose(c[2, 5], expected, atol=1e-6)
    assert float(c.min()) >= -1.0 and float(c.max()) <= 1.0


def test_normalized_similarity_rows_span_zero_to_one_with_unit_diagonal():
    c = dirichlet.class_similarity(_head_kernel())
    assert float(c.min()) >= 0.0 and float(c.max()) <= 1.0
    np.testing.assert_allclose(c.min(axis=1), np.zeros(K), atol=1e-7)
    np.testing.assert_allclose(np.diag(c), np.ones(K), atol=1e-6)


def test_similarity_ignores_template_length():
    kernel = _head_kernel()
    scaled = kernel * jnp.arange(1.0, K + 1.0)[None, :]
    chex.assert_trees_all_close(dirichlet.class_similarity(kernel),
                                dirichlet.class_similarity(scaled), atol=1e-5)


def test_conv_1x1_kernel_matches_dense():
    kernel = _head_kernel()
    chex.assert_trees_all_close(dirichlet.class_similarity(kernel[None, None]),
                                dirichlet.class_similarity(kernel))


@pytest.mark.parametrize("shape", [(10,), (3, 3, 16, 10), (1, 2, 16, 10), (2, 16, 10)])
def test_bad_kernel_shape_raises(shape):
    with pytest.raises(ValueError, match="dense \\(D, K\\) or 1x1 conv"):
        dirichlet.class_similarity(jnp.ones(shape))


# --- concentration ------------------------------------------------------------------------------


def test_concentration_scales_and_floors():
    c = dirichlet.class_similarity(_head_kernel())
    alpha = dirichlet.concentration(c, 0.1, floor=1e-3)
    assert float(alpha.min()) == pytest.approx(0.1 * 1e-3)
    chex.assert_trees_all_close(alpha, 0.1 * jnp.maximum(c, 1e-3))


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf")])
def test_concentration_rejects_bad_beta(beta):
    with pytest.raises(ValueError, match="β must be > 0"):
        dirichlet.concentration(jnp.eye(K), beta)


@pytest.mark.parametrize("floor", [0.0, -1e-3, 1.0, float("nan")])
def test_concentration_rejects_bad_floor(floor):
    with pytest.raises(ValueError, match="floor"):
        dirichlet.concentration(jnp.eye(K), 1.0, floor=floor)


def test_concentration_rejects_bad_similarity():
    with pytest.raises(ValueError, match="square"):
        dirichlet.concentration(jnp.ones((K, K + 1)), 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        dirichlet.concentration(jnp.eye(K).at[0, 1].set(jnp.nan), 1.0)
    with pytest.raises(ValueError, match="negative"):
        dirichlet.concentration(dirichlet.class_similarity(_head_kernel(), normalize=False), 1.0)


# --- dirichlet_targets --------------------------------------------------------------------------


# One draw shared by the tests below: sampling compiles a gamma sampler per shape (seconds on CPU).
BETAS = (10.0, 1.0, 0.1, 0.01)
PER_CLASS = 4000
PER_BETA = PER_CLASS // len(BETAS)


@pytest.fixture(scope="module")
def similarity():
    return dirichlet.class_similarity(_head_kernel(seed=3))


@pytest.fixture(scope="module")
def drawn(similarity):
    return dirichlet.dirichlet_targets(jax.random.key(1), similarity, BETAS, PER_CLASS)


def _by_beta(targets: jax.Array) -> np.ndarray:
    """(N, K) targets -> (B, K classes, PER_BETA, K)."""
    return np.asarray(targets, np.float64).reshape(K, len(BETAS), PER_BETA, K).swapaxes(0, 1)


def test_targets_layout(drawn):
    targets, classes, betas = drawn
    chex.assert_shape(targets, (K * PER_CLASS, K))
    chex.assert_type([targets, classes, betas], [jnp.float32, jnp.int32, jnp.float32])
    np.testing.assert_array_equal(classes, np.repeat(np.arange(K), PER_CLASS))
    np.testing.assert_allclose(betas, np.tile(np.repeat(BETAS, PER_BETA), K))
    assert bool(jnp.all(jnp.isfinite(targets))) and bool(jnp.all(targets >= 0))
    np.testing.assert_allclose(targets.sum(-1), np.ones(K * PER_CLASS), atol=1e-5)


def test_sample_means_match_normalised_similarity_rows(similarity, drawn):
    # E[y] = α / Σα = c_k / Σ c_k (after the floor) for y ~ Dir(β c_k), whatever β.
    samples = _by_beta(drawn[0])
    for b, beta in enumerate(BETAS):
        alpha = np.asarray(dirichlet.concentration(similarity, beta), np.float64)
        mean = alpha / alpha.sum(-1, keepdims=True)
        std_of_mean = np.sqrt(mean * (1 - mean) / (alpha.sum(-1, keepdims=True) + 1) / PER_BETA)
        np.testing.assert_array_less(np.abs(samples[b].mean(1) - mean), 5 * std_of_mean + 2e-3)


def test_smaller_beta_gives_sparser_targets(drawn):
    samples = jnp.asarray(_by_beta(drawn[0]))
    max_prob = samples.max(-1).mean(axis=(1, 2))
    entropy = _entropy(samples).mean(axis=(1, 2))
    assert bool(jnp.all(jnp.diff(max_prob) > 0)), max_prob  # BETAS decrease
    assert bool(jnp.all(jnp.diff(entropy) < 0)), entropy


def test_tiny_beta_targets_are_finite_near_one_hot(drawn):
    # β = 0.01 puts concentrations at 1e-5: samples sit on the simplex's corners (Fig. 4).
    tiny = _by_beta(drawn[0])[BETAS.index(0.01)]
    assert np.all(np.isfinite(tiny))
    np.testing.assert_allclose(tiny.sum(-1), 1.0, atol=1e-5)
    assert tiny.max(-1).mean() > 0.9


def test_sanitize_replaces_non_finite_rows_with_the_most_likely_vertex():
    alpha = jnp.array([[1e-6, 1e-4, 1e-6], [1e-6, 1e-4, 1e-6]])
    samples = jnp.array([[jnp.nan, 0.5, 0.5], [0.2, 0.2, 0.2]])
    fixed = dirichlet._sanitize_samples(samples, alpha)
    np.testing.assert_allclose(fixed, [[0.0, 1.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-6)


def test_targets_are_reproducible_under_jit(similarity, drawn):
    fn = jax.jit(dirichlet.dirichlet_targets, static_argnames=("betas", "num_per_class"))
    jitted = fn(jax.random.key(1), similarity, betas=BETAS, num_per_class=PER_CLASS)
    chex.assert_trees_all_close(jitted, drawn, atol=1e-5)


@pytest.mark.parametrize("betas, num_per_class, match", [
    ([], 4, "at least one"),
    ([1.0, 0.0], 4, "β must be > 0"),
    ([-0.1], 4, "β must be > 0"),
    ([1.0, 0.1], 1, "multiple of len\\(betas\\)=2"),
    ([1.0, 0.1], 5, "multiple of len\\(betas\\)=2"),
    ([1.0], 0, "multiple"),
])
def test_targets_reject_bad_arguments(betas, num_per_class, match):
    c = dirichlet.class_similarity(_head_kernel())
    with pytest.raises(ValueError, match=match):
        dirichlet.dirichlet_targets(jax.random.key(0), c, betas, num_per_class)


def test_targets_reject_bad_floor():
    c = dirichlet.class_similarity(_head_kernel())
    with pytest.raises(ValueError, match="floor"):
        dirichlet.dirichlet_targets(jax.random.key(0), c, [1.0], 2, floor=0.0)


def test_check_betas_accepts_what_dirichlet_targets_accepts():
    """The β check that a synthesis block runs before any teacher exists returns floats and
    refuses what `dirichlet_targets` refuses, with the same messages."""
    assert dirichlet.check_betas([1, 0.1], 4) == (1.0, 0.1)
    for betas, num_per_class, match in [([], 2, "at least one"),
                                        ([1.0, -1.0], 2, "β must be > 0"),
                                        ([1.0, float("inf")], 2, "β must be > 0"),
                                        ([1.0, 0.1], 3, "multiple of len\\(betas\\)=2")]:
        with pytest.raises(ValueError, match=match):
            dirichlet.check_betas(betas, num_per_class)


# --- impression_targets: the targets of a synthesis block ---------------------------------------


def test_impression_targets_are_dirichlet_draws_around_the_teachers_head(random_variables):
    """A Data Impressions block draws its targets from the class similarity of the teacher's
    final layer with the block's seed, β mixture and floor; a Class Impressions block takes
    one-hot targets; a teacher without a final linear layer is refused, naming the method."""
    model = models.get_model("lenet5")
    teacher = Teacher(model=model, variables=random_variables(model, (32, 32, 1)),
                      image_shape=(32, 32, 1))
    block = ml_collections.ConfigDict(dict(kind="dirichlet", betas=(1.0, 0.1), floor=1e-2,
                                           num_per_class=4, seed=2))
    drawn = impressions.impression_targets(teacher, block)
    expected = dirichlet.dirichlet_targets(jax.random.key(2),
                                           dirichlet.class_similarity(teacher.head()[0]),
                                           (1.0, 0.1), 4, floor=1e-2)
    for got, want in zip(drawn, expected, strict=True):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, want)
    block.kind = "one_hot"
    for got, want in zip(impressions.impression_targets(teacher, block),
                         dirichlet.one_hot_targets(K, 4), strict=True):
        np.testing.assert_array_equal(got, want)
    block.kind = "dirichlet"
    headless = Teacher(model=model, variables=teacher.variables, image_shape=(32, 32, 1),
                       head_name="missing")
    with pytest.raises(TeacherLayerError, match="Data Impressions reads the teacher's final"):
        impressions.impression_targets(headless, block)


# --- one_hot_targets ----------------------------------------------------------------------------


def test_one_hot_targets():
    targets, classes, betas = dirichlet.one_hot_targets(3, 2)
    np.testing.assert_array_equal(classes, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(targets, np.eye(3)[[0, 0, 1, 1, 2, 2]])
    np.testing.assert_array_equal(betas, np.zeros(6))
    chex.assert_type([targets, classes, betas], [jnp.float32, jnp.int32, jnp.float32])
    with pytest.raises(ValueError):
        dirichlet.one_hot_targets(0, 2)


# --- feature_class_similarity and similarity_agreement ------------------------------------------


def test_feature_similarity_of_separated_classes_is_identity():
    # Class k's features point along axis k (with varying length), so class means are
    # orthogonal: the similarity is the identity after min-max normalisation.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(K), 20)
    features = np.eye(K)[labels] * rng.uniform(0.5, 3.0, size=(len(labels), 1))
    c = dirichlet.feature_class_similarity(features, labels, K)
    chex.assert_trees_all_close(c, jnp.eye(K), atol=1e-6)


def test_feature_similarity_agrees_with_head_similarity_for_a_linear_teacher():
    # Features drawn around each class template of a linear head: the real-data similarity
    # (Appendix B) should track the weight similarity (eq. 1).
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(32, K))
    labels = np.repeat(np.arange(K), 200)
    features = kernel.T[labels] + 0.3 * rng.normal(size=(len(labels), 32))
    real = dirichlet.feature_class_similarity(features, labels, K)
    agreement = dirichlet.similarity_agreement(dirichlet.class_similarity(kernel), real)
    assert agreement["pearson"] > 0.9 and agreement["spearman"] > 0.9


def test_feature_similarity_rejects_missing_classes_and_bad_shapes():
    labels = np.array([0, 0, 2])
    with pytest.raises(ValueError, match="classes \\[1\\] have no examples"):
        dirichlet.feature_class_similarity(np.ones((3, 4)), labels, 3)
    with pytest.raises(ValueError, match="labels must lie"):
        dirichlet.feature_class_similarity(np.ones((3, 4)), np.array([0, 1, 3]), 3)
    with pytest.raises(ValueError, match="features must be"):
        dirichlet.feature_class_similarity(np.ones((3, 4, 1)), labels, 3)


def test_agreement_identical_and_scaled():
    c = dirichlet.class_similarity(_head_kernel())
    same = dirichlet.similarity_agreement(c, c)
    assert same["pearson"] == pytest.approx(1.0) and same["spearman"] == pytest.approx(1.0)
    scaled = dirichlet.similarity_agreement(c, 3.0 * c)
    assert scaled["pearson"] == pytest.approx(1.0) and scaled["spearman"] == pytest.approx(1.0)
    flipped = dirichlet.similarity_agreement(c, -c)
    assert flipped["pearson"] == pytest.approx(-1.0)


def test_agreement_ignores_the_diagonal_by_default():
    a = np.array([[1.0, 0.2, 0.9], [0.2, 1.0, 0.5], [0.9, 0.5, 1.0]])
    b = a.copy()
    np.fill_diagonal(b, 5.0)
    assert dirichlet.similarity_agreement(a, b)["pearson"] == pytest.approx(1.0)
    assert dirichlet.similarity_agreement(a, b, include_diagonal=True)["pearson"] < 0.99


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    a = np.round(rng.uniform(size=(K, K)), 1)  # rounding creates ties
    b = np.round(a + rng.normal(scale=0.3, size=(K, K)), 1)
    off = ~np.eye(K, dtype=bool)
    got = dirichlet.similarity_agreement(a, b)
    assert got["spearman"] == pytest.approx(stats.spearmanr(a[off], b[off]).statistic)
    assert got["pearson"] == pytest.approx(stats.pearsonr(a[off], b[off]).statistic)


def test_agreement_rejects_bad_input():
    with pytest.raises(ValueError, match="\\(K, K\\)"):
        dirichlet.similarity_agreement(np.eye(3), np.eye(4))
    with pytest.raises(ValueError, match="undefined"):
        dirichlet.similarity_agreement(np.eye(3), np.ones((3, 3)))
