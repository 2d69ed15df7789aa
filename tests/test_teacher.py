"""The frozen teacher view: head weights, penultimate features and BatchNorm statistics, with
clear errors when the model lacks the layer a method needs."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import models, train
from jaxinv.teacher import Teacher, TeacherLayerError


@pytest.fixture
def make_teacher(random_variables):
    def make(model: nn.Module, image_shape=(32, 32, 1)) -> Teacher:
        return Teacher(model=model, variables=random_variables(model, image_shape),
                       image_shape=image_shape)

    return make


def _images(n: int = 8, shape=(32, 32, 1)) -> np.ndarray:
    return np.random.default_rng(1).random((n, *shape), np.float32)


class HeadlessNet(nn.Module):
    """Its final dense layer is called `classifier`, not `head`."""

    @nn.compact
    def __call__(self, images, train: bool = False):
        del train
        x = nn.relu(nn.Dense(16, name="hidden")(images.reshape(images.shape[0], -1)))
        return nn.Dense(10, name="classifier")(x)


class TinyBNNet(nn.Module):
    """conv(4) -> BN -> relu -> conv(6) -> BN -> mean -> head: BN inputs of 4 and 6 channels."""

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = nn.Conv(4, (3, 3), name="conv1")(images)
        self.sow("intermediates", "bn1_input", x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn1")(x))
        x = nn.Conv(6, (3, 3), name="conv2")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn2")(x))
        x = x.mean(axis=(1, 2))
        self.sow("intermediates", "features", x)
        return nn.Dense(10, name="head")(x)


def test_head_of_lenet_is_its_final_dense_layer(make_teacher):
    """head() returns the (D, K) kernel and (K,) bias that produce the logits from features."""
    teacher = make_teacher(models.get_model("lenet5"))
    kernel, bias = teacher.head()
    chex.assert_shape(kernel, (84, 10))
    chex.assert_shape(bias, (10,))
    features, logits = jax.jit(lambda x: (teacher.features(x), teacher.logits(x)))(_images())
    chex.assert_trees_all_close(features @ kernel + bias, logits, atol=1e-5)


def test_model_without_head_layer_raises_clear_error(make_teacher):
    """Data Impressions need the final layer's weights; a model without `head` says so."""
    teacher = make_teacher(HeadlessNet())
    with pytest.raises(TeacherLayerError, match="HeadlessNet has no accessible final linear "
                                                "layer.*Name the final nn.Dense .* `head`"):
        teacher.head()
    assert issubclass(TeacherLayerError, ValueError)
    with pytest.raises(TeacherLayerError, match="HeadlessNet exposes no penultimate features"):
        teacher.features(_images())


def test_batchnorm_statistics_without_batchnorm_raises(make_teacher):
    """LeNet-5 has no BatchNorm: BN-matching methods get a clear refusal, not empty stats."""
    with pytest.raises(TeacherLayerError, match="LeNet5 has no BatchNorm layers"):
        make_teacher(models.get_model("lenet5")).batchnorm_statistics(_images())


def test_batchnorm_statistics_are_the_inputs_moments_and_running_stats(make_teacher):
    """Per BN layer, in call order: the batch mean/var of its input over N, H, W and the
    layer's running mean/var."""
    teacher = make_teacher(TinyBNNet(), (8, 8, 3))
    running = {"mean": jnp.linspace(-1.0, 1.0, 4), "var": jnp.linspace(0.5, 2.0, 4)}
    variables = {**teacher.variables,
                 "batch_stats": {**teacher.variables["batch_stats"], "bn1": running}}
    images = _images(8, (8, 8, 3))
    stats = jax.jit(teacher.batchnorm_statistics)(images, variables)
    assert [s["mean"].shape for s in stats] == [(4,), (6,)]
    assert [s["running_var"].shape for s in stats] == [(4,), (6,)]
    _, state = jax.jit(functools.partial(teacher.model.apply, mutable=["intermediates"]))(
        variables, images)
    bn1_input = state["intermediates"]["bn1_input"][0]
    chex.assert_trees_all_close(stats[0]["mean"], bn1_input.mean((0, 1, 2)), atol=1e-6)
    chex.assert_trees_all_close(stats[0]["var"], bn1_input.var((0, 1, 2)), atol=1e-6)
    chex.assert_trees_all_close(stats[0]["running_mean"], running["mean"])
    chex.assert_trees_all_close(stats[0]["running_var"], running["var"])
    # Stored variables are used when none are passed (fresh running stats: zeros and ones).
    stored = jax.jit(teacher.batchnorm_statistics)(images)
    np.testing.assert_array_equal(stored[1]["running_var"], np.ones(6))


def test_batchnorm_statistics_of_resnet32_cover_every_layer(make_teacher):
    """On ResNet-32 (traced only, via eval_shape) there is one entry per BatchNorm layer, with
    that layer's channel count (16, 32 or 64)."""
    model = models.get_model("resnet32")
    abstract = jax.eval_shape(lambda: train.init_variables(model, jax.random.key(0),
                                                           (32, 32, 3)))
    teacher = Teacher(model=model, variables=abstract, image_shape=(32, 32, 3))
    stats = jax.eval_shape(teacher.batchnorm_statistics, jax.ShapeDtypeStruct((4, 32, 32, 3),
                                                                              jnp.float32),
                           abstract)
    num_bn_layers = sum(1 for path, _ in jax.tree_util.tree_leaves_with_path(
        abstract["batch_stats"]) if path[-1].key == "mean")
    assert len(stats) == num_bn_layers >= 31
    channels = [s["mean"].shape[0] for s in stats]
    assert set(channels) == {16, 32, 64} and channels[0] == 16 and channels[-1] == 64
    for s in stats:
        assert s["var"].shape == s["running_mean"].shape == s["running_var"].shape == \
            s["mean"].shape


def test_features_match_head_input_dimension(make_teacher):
    """features() is (N, D) with D the head kernel's input dimension, for LeNet and a BN net."""
    for teacher, shape in ((make_teacher(models.get_model("lenet5_half")), (32, 32, 1)),
                           (make_teacher(TinyBNNet(), (8, 8, 3)), (8, 8, 3))):
        features = jax.jit(teacher.features)(_images(8, shape))
        chex.assert_shape(features, (8, teacher.head()[0].shape[0]))
        assert teacher.num_classes == 10
