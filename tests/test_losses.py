"""The inversion losses of jaxinv.losses against their definitions, on small arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import losses


def _stats(rng, layers=((4,), (6,))):
    keys = jax.random.split(rng, 2 * len(layers))
    return [{"mean": jax.random.normal(keys[2 * i], shape),
             "var": jax.random.uniform(keys[2 * i + 1], shape, minval=0.5, maxval=2.0),
             "running_mean": jnp.zeros(shape), "running_var": jnp.ones(shape)}
            for i, shape in enumerate(layers)]


def test_batchnorm_loss_is_zero_at_the_running_statistics_and_the_sum_of_norms_otherwise():
    stats = _stats(jax.random.key(0))
    matched = [{**s, "running_mean": s["mean"], "running_var": s["var"]} for s in stats]
    assert float(losses.batchnorm_statistics_loss(matched)) == 0.0
    expected = sum(np.linalg.norm(s["mean"]) + np.linalg.norm(s["var"] - 1.0) for s in stats)
    np.testing.assert_allclose(losses.batchnorm_statistics_loss(stats), expected, rtol=1e-5)


def test_adversarial_divergence_is_minus_kl_on_agreeing_samples():
    teacher = jnp.array([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    student = jnp.array([[1.0, 0.5, 0.0], [2.0, 0.0, 0.0]])  # agrees on row 0 only
    p = jax.nn.softmax(teacher, -1)
    kl = jnp.sum(p * (jax.nn.log_softmax(teacher, -1) - jax.nn.log_softmax(student, -1)), -1)
    np.testing.assert_allclose(losses.adversarial_divergence(teacher, student), -kl[0] / 2,
                               rtol=1e-6)
    np.testing.assert_allclose(losses.adversarial_divergence(teacher, student,
                                                             agreeing_only=False),
                               -kl.mean(), rtol=1e-6)
    assert float(losses.adversarial_divergence(teacher, teacher)) == pytest.approx(0.0,
                                                                                   abs=1e-7)


def test_jensen_shannon_is_symmetric_zero_on_equal_inputs_and_at_most_log_two():
    a = jax.random.normal(jax.random.key(1), (5, 7))
    b = jax.random.normal(jax.random.key(2), (5, 7))
    np.testing.assert_allclose(losses.jensen_shannon(a, b), losses.jensen_shannon(b, a),
                               rtol=1e-6)
    assert float(losses.jensen_shannon(a, a)) == pytest.approx(0.0, abs=1e-7)
    far = losses.jensen_shannon(jnp.array([[50.0, 0.0]]), jnp.array([[0.0, 50.0]]))
    np.testing.assert_allclose(far, np.log(2.0), rtol=1e-4)


def test_instance_contrastive_loss_prefers_aligned_positives():
    rng = jax.random.split(jax.random.key(3), 3)
    anchors = jax.random.normal(rng[0], (8, 16))
    negatives = jax.random.normal(rng[1], (32, 16))
    aligned = losses.instance_contrastive_loss(anchors, 2.0 * anchors, negatives)
    unrelated = losses.instance_contrastive_loss(anchors, jax.random.normal(rng[2], (8, 16)),
                                                 negatives)
    assert float(aligned) < float(unrelated)
    # With one negative equal to the positive direction, the loss is log 2 at any τ.
    one = jnp.array([[1.0, 0.0]])
    np.testing.assert_allclose(losses.instance_contrastive_loss(one, one, one, temperature=0.5),
                               np.log(2.0), rtol=1e-6)
    # Masked negatives count for nothing: with every negative masked the loss is 0.
    masked = losses.instance_contrastive_loss(anchors, 2.0 * anchors, negatives,
                                              negative_mask=np.zeros(32, bool))
    np.testing.assert_allclose(masked, 0.0, atol=1e-6)
    half = np.arange(32) < 16
    np.testing.assert_allclose(
        losses.instance_contrastive_loss(anchors, anchors, negatives, negative_mask=half),
        losses.instance_contrastive_loss(anchors, anchors, negatives[:16]), rtol=1e-5)


def test_image_priors():
    flat = jnp.full((2, 4, 4, 1), 0.5)
    np.testing.assert_allclose(losses.image_l2(flat), [4.0, 4.0])
    np.testing.assert_array_equal(losses.total_variation_l1(flat), [0.0, 0.0])
    stripes = jnp.tile(jnp.array([0.0, 1.0]), 2).reshape(1, 1, 4, 1).repeat(4, axis=1)
    # Every horizontal neighbour differs by 1, no vertical one does.
    np.testing.assert_allclose(losses.total_variation_l1(stripes), [1.0])
