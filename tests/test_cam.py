"""jaxinv.cam: CAMs, Grad-CAMs, SpaceshipNet's mSARC loss and Table C's CAM difference."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import cam

N, H, W, D, K = 3, 4, 5, 6, 7


@pytest.fixture
def parts():
    """A feature map (N, H, W, D), a head kernel (D, K) and bias (K,), classes (N,)."""
    rng = np.random.default_rng(0)
    features = jnp.asarray(rng.normal(size=(N, H, W, D)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(D, K)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(K,)), jnp.float32)
    return features, kernel, bias, jnp.array([2, 0, 6])


def pooled_dense(kernel, bias):
    """The head of every jaxinv CNN: global average pooling, then Dense."""
    return lambda f: f.mean(axis=(1, 2)) @ kernel + bias


def test_head_cam_is_the_head_weighted_sum_of_the_feature_maps(parts):
    features, kernel, _, classes = parts
    f, w = np.asarray(features, np.float64), np.asarray(kernel, np.float64)
    explicit = np.zeros((N, H, W))
    for n in range(N):
        for p in range(D):  # Σ_p w_p^c f_p
            explicit[n] += w[p, int(classes[n])] * f[n, :, :, p]
    np.testing.assert_allclose(cam.head_cam(features, kernel, classes), explicit,
                               rtol=1e-5, atol=1e-5)
    # All K maps: the head's weights as a bias-free 1x1 convolution (the paper's
    # implementation), and the per-class maps are its channels.
    conv = nn.Conv(K, (1, 1), use_bias=False)
    as_conv = conv.apply({"params": {"kernel": kernel.reshape(1, 1, D, K)}}, features)
    all_maps = cam.head_cam(features, kernel)
    np.testing.assert_allclose(all_maps, as_conv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(all_maps[np.arange(N), ..., classes], explicit,
                               rtol=1e-5, atol=1e-5)
    # A 1x1 convolution's kernel, as Teacher.head() may return, reads the same.
    np.testing.assert_allclose(cam.head_cam(features, kernel.reshape(1, 1, D, K), classes),
                               explicit, rtol=1e-5, atol=1e-5)


def test_head_cam_averages_to_the_logit_minus_the_bias(parts):
    features, kernel, bias, classes = parts
    logits = pooled_dense(kernel, bias)(features)
    np.testing.assert_allclose(cam.head_cam(features, kernel, classes).mean(axis=(1, 2)),
                               logits[np.arange(N), classes] - bias[classes], rtol=1e-5,
                               atol=1e-5)


def test_grad_cam_of_a_linear_head_is_its_weights_and_proportional_to_head_cam(parts):
    features, kernel, bias, classes = parts
    head = pooled_dense(kernel, bias)
    weights = cam.grad_cam_weights(features, head, classes)
    np.testing.assert_allclose(weights, kernel.T[classes] / (H * W), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cam.grad_cam(features, head, classes),
                               cam.head_cam(features, kernel, classes) / (H * W),
                               rtol=1e-5, atol=1e-5)


def test_grad_cam_weights_are_held_constant(parts):
    features, kernel, _, classes = parts
    # A non-linear head: without stop_gradient the weights would depend on the features.
    head = lambda f: jnp.tanh(f).mean(axis=(1, 2)) @ kernel
    weights = cam.grad_cam_weights(features, head, classes)
    expected = (1 - jnp.tanh(features) ** 2).mean(axis=(1, 2)) * kernel.T[classes] / (H * W)
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    gradient = jax.grad(lambda f: cam.grad_cam(f, head, classes).sum())(features)
    # d/df Σ_{h,w} Σ_p α_p f_p with α constant is α at every position.
    np.testing.assert_allclose(gradient, jnp.broadcast_to(weights[:, None, None, :],
                                                          features.shape), rtol=1e-5,
                               atol=1e-6)
    jitted = jax.jit(cam.grad_cam, static_argnums=1)(features, head, classes)
    np.testing.assert_allclose(jitted, cam.grad_cam(features, head, classes), rtol=1e-5)


class TwoStages(nn.Module):
    """conv-ReLU (stage 1), conv-ReLU (stage 2), pooling, Dense; `tail` runs stage 2 on."""

    def setup(self):
        self.conv1, self.conv2 = nn.Conv(4, (3, 3)), nn.Conv(5, (3, 3), strides=2)
        self.head = nn.Dense(K)

    def tail(self, stage1):
        return self.head(nn.relu(self.conv2(stage1)).mean(axis=(1, 2)))

    def __call__(self, images):
        stage1 = self.perturb("stage1", nn.relu(self.conv1(images)))
        self.sow("intermediates", "stage1", stage1)
        return self.tail(stage1)


def test_grad_cam_from_the_gradient_of_a_perturbed_stage_equals_grad_cam_of_its_tail():
    model, images = TwoStages(), jax.random.uniform(jax.random.key(0), (N, 8, 8, 3))
    variables = model.init(jax.random.key(1), images)  # params and zero "perturbations"
    classes = jnp.array([1, 4, 0])

    def class_score(perturbations):
        logits, state = model.apply({**variables, "perturbations": perturbations}, images,
                                    mutable=["intermediates"])
        score = jnp.sum(logits * jax.nn.one_hot(classes, K))
        return score, state["intermediates"]["stage1"][0]

    gradient, stage1 = jax.grad(class_score, has_aux=True)(variables["perturbations"])
    tail = lambda f: model.apply(variables, f, method=TwoStages.tail)
    np.testing.assert_allclose(cam.grad_cam_from_gradient(stage1, gradient["stage1"]),
                               cam.grad_cam(stage1, tail, classes), rtol=1e-4, atol=1e-6)


def test_msarc_is_zero_for_identical_cams_and_the_sum_of_stage_mses_otherwise():
    rng = np.random.default_rng(1)
    teacher = [jnp.asarray(rng.normal(size=s), jnp.float32)
               for s in [(N, 8, 8), (N, 4, 4), (N, 2, 2, K)]]
    assert float(cam.msarc_loss(teacher, teacher)) == 0.0
    student = [t + 0.5 for t in teacher[:2]] + [teacher[2]]
    assert float(cam.msarc_loss(teacher, student)) == pytest.approx(0.5, rel=1e-5)
    assert float(cam.msarc_loss(teacher, [t * 0 for t in teacher])) > 0
    # Gradients reach the student's maps only.
    to_student, to_teacher = jax.grad(cam.msarc_loss, argnums=(1, 0))(teacher, student)
    np.testing.assert_allclose(to_student[0], 2 * 0.5 / teacher[0].size, rtol=1e-5)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in to_teacher)


def test_msarc_resizes_the_students_maps_to_the_teachers():
    teacher = [jnp.full((N, 8, 8), 2.0)]
    assert float(cam.msarc_loss(teacher, [jnp.full((N, 4, 4), 2.0)])) == pytest.approx(0.0)
    assert float(cam.msarc_loss(teacher, [jnp.full((N, 16, 16), 3.0)])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 teacher and 1 student"):
        cam.msarc_loss(teacher * 2, teacher)
    with pytest.raises(ValueError, match="differ in more than their spatial size"):
        cam.msarc_loss(teacher, [jnp.zeros((N + 1, 8, 8))])


def test_cam_difference_is_zero_for_equal_cams_and_within_0_255():
    rng = np.random.default_rng(2)
    teacher = jnp.asarray(rng.normal(size=(N, 4, 4)), jnp.float32)
    same = cam.cam_difference(teacher, teacher, 32)
    assert float(same["mae"]) == 0.0 and float(same["mse"]) == 0.0
    # Rescaling makes a positive scale and shift of the same map no different.
    shifted = cam.cam_difference(teacher, 3 * teacher + 1, (32, 32))
    assert float(shifted["mae"]) == pytest.approx(0.0, abs=1e-3)
    # A student of another size, and an opposite one: positive, and the MAE within [0, 255].
    student = jnp.asarray(rng.normal(size=(N, 8, 8)), jnp.float32)
    for other in (student, -teacher):
        result = cam.cam_difference(teacher, other, 32)
        assert 0 < float(result["mae"]) <= 255
        assert float(result["mae"]) ** 2 <= float(result["mse"]) <= 255**2
    # Opposite maps are far apart: where one is 255 the other is 0.
    assert float(cam.cam_difference(teacher, -teacher, 32)["mae"]) > 50
