"""Tests for jaxinv.models: parameter counts from the papers, the model contract (logits, sown
features, `head`, BatchNorm), and the layers the models share."""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import models
from jaxinv.models.lenet import conv_valid

BATCH_SIZE = 2
GRAYSCALE_32 = (32, 32, 1)
GRAYSCALE_28 = (28, 28, 1)
CIFAR = (32, 32, 3)
# Per-example input shape of every registered model.
INPUT_SHAPES = {
    "lenet5": GRAYSCALE_32,
    "lenet5_half": GRAYSCALE_32,
    "adda_lenet": GRAYSCALE_28,
    "adda_discriminator": (500,),
    "digits_cnn": (8, 8, 1),
    "digits_cnn_half": (8, 8, 1),
    "mlp": GRAYSCALE_32,
    "vit": GRAYSCALE_32,
    "resnet8": GRAYSCALE_32,
    "bn_cnn": GRAYSCALE_32,
    "bn_cnn_half": GRAYSCALE_32,
}
# The smallest model of each family; only these run for real, to keep the file fast on CPU.
FAMILY_REPRESENTATIVES = (
    "lenet5_half",
    "alexnet_half",
    "resnet18_half",
    "wrn16_1",
    "vgg8",
    "adda_lenet",
    "adda_discriminator",
    "mlp",
    "vit",
)


def _images(name: str, seed: int = 0) -> jax.Array:
    shape = (BATCH_SIZE, *INPUT_SHAPES.get(name, CIFAR))
    return jax.random.uniform(jax.random.key(seed), shape)


def _abstract_variables(model: nn.Module, images: jax.Array) -> dict:
    return jax.eval_shape(lambda: model.init(jax.random.key(0), images))


def _init(model: nn.Module, images: jax.Array) -> dict:
    # The "rbg" generator compiles several times faster than threefry for big initialisers.
    return jax.jit(model.init)(jax.random.key(0, impl="rbg"), images)


def _param_count(name: str) -> int:
    model = models.get_model(name)
    return models.count_params(_abstract_variables(model, _images(name))["params"])


def test_lenet_param_counts_are_the_papers():
    # Nayak et al., ICML 2019, Sec. 4.1.1: 61,706 and 35,820 parameters.
    assert _param_count("lenet5") == 61_706
    assert _param_count("lenet5_half") == 35_820


def test_alexnet_param_counts():
    # The paper's teacher has 1.65e6 parameters. Its AlexNet-Half is quoted as 7.23e5, but
    # halving every width except the head scales each layer by 1/4 (1/2 for the first conv,
    # the head, biases and BatchNorm), so no halving of a 1.65e6 network reaches 0.44 of it;
    # the authors' model_alex_half.py has 417,434, which is what "alexnet_half" reproduces.
    assert _param_count("alexnet") == pytest.approx(1.65e6, rel=0.02)
    assert _param_count("alexnet_half") == 417_434


@pytest.mark.parametrize(
    ("name", "cited_count"),
    [
        ("resnet18", 11.17e6),  # CIFAR ResNet-18 of the DAFL / CMI code
        ("resnet34", 21.28e6),
        ("resnet18_half", 2.80e6),  # a quarter of ResNet-18's convolutions
        ("resnet32", 0.46e6),  # He et al., CVPR 2016, Table 6
        ("wrn16_1", 0.175e6),  # Zagoruyko and Komodakis, BMVC 2016; CMI, Table 1
        ("wrn16_2", 0.69e6),
        ("wrn40_1", 0.56e6),
        ("wrn40_2", 2.24e6),
        ("vgg8", 3.92e6),  # CRD's VGG-8 (3.96M with CRD's 100 classes)
        ("vgg11", 9.23e6),
        ("vgg16", 14.73e6),
        ("vgg19", 20.04e6),
        ("adda_lenet", 431_080),  # Tzeng et al.: 520 + 25,050 + 400,500 + 5,010
        ("adda_discriminator", 502_002),  # 500 -> 500 -> 500 -> 2
    ],
)
def test_param_counts_match_the_papers(name, cited_count):
    assert _param_count(name) == pytest.approx(cited_count, rel=0.02)


@pytest.mark.parametrize(("name", "count"), [("mlp", 330_762), ("vit", 61_450),
                                             ("resnet8", 19_810), ("bn_cnn", 61_050),
                                             ("bn_cnn_half", 15_554)])
def test_digit_models_fit_a_cpu(name, count):
    """CAKE's cross-type models (MLP, ViT, ResNet next to LeNet-5) and the BN teacher of
    DeepInversion and CMI: the README's parameter counts, and at most about 5M multiply-adds
    per 32x32 grey image (XLA's count)."""
    model = models.get_model(name)
    images = jnp.zeros((1, *GRAYSCALE_32))
    variables = _abstract_variables(model, images)
    assert models.count_params(variables["params"]) == count
    cost = jax.jit(model.apply).lower(variables, images).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    assert cost["flops"] / 2 <= 5.2e6


@pytest.mark.parametrize(("name", "count", "budget"), [("wrn10_1", 77_850, 15e6),
                                                       ("wrn10_1_half", 19_858, 4e6)])
def test_cifar_bn_models_fit_a_cpu(name, count, budget):
    """The CPU-scale CIFAR-10 teacher and student of DeepInversion and CMI: the README's
    parameter counts, and at most about 15M multiply-adds per 32x32x3 image (XLA's count)."""
    model = models.get_model(name)
    images = jnp.zeros((1, 32, 32, 3))
    variables = _abstract_variables(model, images)
    assert models.count_params(variables["params"]) == count
    cost = jax.jit(model.apply).lower(variables, images).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    assert cost["flops"] / 2 <= budget


@pytest.mark.parametrize("name", models.MODEL_NAMES)
@pytest.mark.parametrize("train", [False, True])
def test_logits_features_and_head_follow_the_contract(name, train):
    num_classes = 2 if name == "adda_discriminator" else 7
    model = models.get_model(name, num_classes=num_classes)
    images = _images(name)
    variables = _abstract_variables(model, images)

    def apply_fn(variables, images):
        return model.apply(
            variables,
            images,
            train=train,
            mutable=["intermediates", "batch_stats"],
            rngs={"dropout": jax.random.key(1)},
        )

    logits, state = jax.eval_shape(apply_fn, variables, images)
    chex.assert_shape(logits, (BATCH_SIZE, num_classes))
    (features,) = state["intermediates"]["features"]
    head_kernel = variables["params"]["head"]["kernel"]
    chex.assert_shape(features, (BATCH_SIZE, None))
    chex.assert_shape(head_kernel, (features.shape[-1], num_classes))
    chex.assert_shape(variables["params"]["head"]["bias"], (num_classes,))


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_train_step_runs_and_input_gradient_is_finite(name):
    model = models.get_model(name)
    images = _images(name)
    variables = _init(model, images)
    has_batch_norm = "batch_stats" in variables

    @jax.jit
    def train_loss_fn(images):
        logits, state = model.apply(
            variables,
            images,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": jax.random.key(1)},
        )
        return logits.sum(), state

    input_grads, state = jax.grad(train_loss_fn, has_aux=True)(images)
    chex.assert_shape(input_grads, images.shape)
    chex.assert_tree_all_finite(input_grads)
    assert float(jnp.abs(input_grads).sum()) > 0
    if has_batch_norm:
        changed = jax.tree.map(
            lambda new, old: bool(jnp.any(new != old)),
            state["batch_stats"],
            variables["batch_stats"],
        )
        # A running mean can stay 0 where ReLU zeroes a unit on the whole batch; the running
        # variance moves from 1 unless the batch variance is exactly 1.
        for path, leaf_changed in jax.tree_util.tree_leaves_with_path(changed):
            if path[-1].key == "var":
                assert leaf_changed, f"train=True left {jax.tree_util.keystr(path)} unchanged"


@pytest.mark.parametrize(
    ("name", "num_batch_norms"),
    [
        ("alexnet", 7),  # five convolutions and two hidden dense layers
        ("resnet18", 20),  # stem, 2 per block, 3 projection shortcuts
        ("wrn16_1", 13),  # 2 per block and the final one
        ("vgg11", 8),  # one per convolution
        ("bn_cnn", 4),
    ],
)
def test_batch_norm_inputs_can_be_intercepted(name, num_batch_norms):
    model = models.get_model(name)
    images = _images(name)
    variables = _abstract_variables(model, images)
    batch_norm_inputs = []

    def record_batch_norm_input(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
            batch_norm_inputs.append(args[0].shape)
        return next_fun(*args, **kwargs)

    def apply_fn(variables, images):
        with nn.intercept_methods(record_batch_norm_input):
            return model.apply(variables, images)

    jax.eval_shape(apply_fn, variables, images)
    assert len(batch_norm_inputs) == num_batch_norms


def test_adda_encode_gives_the_sown_features():
    model = models.get_model("adda_lenet")
    images = _images("adda_lenet")
    variables = _init(model, images)
    encoded = model.apply(variables, images, method=models.AddaLeNet.encode)
    _, state = model.apply(variables, images, mutable=["intermediates"])
    chex.assert_shape(encoded, (BATCH_SIZE, 500))
    chex.assert_trees_all_close(encoded, state["intermediates"]["features"][0])


def test_models_apply_to_single_unbatched_images():
    # Synthesis vmaps over examples, so a model must also work on one (H, W, C) image.
    model = models.get_model("alexnet_half")
    images = _images("alexnet_half")
    variables = _init(model, images)

    @jax.jit
    def batched_and_mapped_fn(variables, images):
        batched = model.apply(variables, images)
        mapped = jax.vmap(lambda image: model.apply(variables, image))(images)
        return batched, mapped

    batched, mapped = batched_and_mapped_fn(variables, images)
    chex.assert_trees_all_close(mapped, batched, atol=1e-5)


def test_unknown_model_name_raises_and_lists_valid_names():
    with pytest.raises(ValueError, match="resnet1000") as error:
        models.get_model("resnet1000")
    for name in models.MODEL_NAMES:
        assert name in str(error.value)


def test_num_classes_and_kwargs_reach_the_module():
    model = models.get_model("resnet32", num_classes=100, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert (model.num_classes, model.mean, model.std) == (100, (0.5,) * 3, (0.5,) * 3)
    assert models.get_model("adda_discriminator", num_classes=100).num_classes == 2


def test_count_params_counts_arrays_and_shape_structs():
    params = {"a": jnp.zeros((3, 4)), "b": {"c": jax.ShapeDtypeStruct((5,), jnp.float32)}}
    assert models.count_params(params) == 17


@pytest.mark.parametrize("shape", [(2, 7, 9, 3), (8, 6, 3)])
def test_max_pool_2x2_matches_nn_max_pool(shape):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(*shape[:-3], shape[-3] // 2, shape[-2] // 2, 3)))

    @jax.jit
    def values_and_grads_fn(x):
        def loss_fn(pool_fn, x):
            return jnp.sum(pool_fn(x) * weights)

        reduce_window_fn = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
        return [
            (pool_fn(x), jax.grad(loss_fn, argnums=1)(pool_fn, x))
            for pool_fn in (models.max_pool_2x2, reduce_window_fn)
        ]

    reshaped, reduced = values_and_grads_fn(x)
    chex.assert_trees_all_close(reshaped, reduced)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_conv_valid_gradients_match_autodiff_of_xla_conv(layout, in_channels):
    # conv_valid writes its own input gradient (one path for a single input channel, another
    # for several); both must equal autodiff of XLA's convolution.
    rng = np.random.default_rng(0)
    shape = (2, 9, 11, in_channels) if layout == "NHWC" else (2, in_channels, 9, 11)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(5, 4, in_channels, 6)), jnp.float32)
    dimension_numbers = (layout, "HWIO", layout)

    def xla_conv(x, kernel):
        return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                            dimension_numbers=dimension_numbers)

    weights = jnp.asarray(rng.normal(size=xla_conv(x, kernel).shape), jnp.float32)

    def loss_fn(conv_fn, x, kernel):
        return jnp.sum(conv_fn(x, kernel) * weights)

    @jax.jit
    def grads_fn(x, kernel):
        return [jax.grad(loss_fn, argnums=(1, 2))(conv_fn, x, kernel)
                for conv_fn in (lambda x, k: conv_valid(x, k, layout), xla_conv)]

    ours, reference = grads_fn(x, kernel)
    chex.assert_trees_all_close(ours, reference, atol=1e-4, rtol=1e-5)


def test_local_response_norm_matches_tensorflows_definition():
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 7)).astype(np.float32)
    radius, bias, alpha, beta = 2, 1.0, 0.5, 0.75
    expected = np.empty_like(x)
    for channel in range(x.shape[-1]):
        window = x[..., max(channel - radius, 0) : channel + radius + 1]
        sum_of_squares = np.sum(window**2, axis=-1)
        expected[..., channel] = x[..., channel] / (bias + alpha * sum_of_squares) ** beta
    actual = models.local_response_norm(x, radius, bias, alpha, beta)
    chex.assert_trees_all_close(actual, expected, rtol=1e-5)


def test_standardize_uses_the_given_statistics():
    images = jnp.full((1, 2, 2, 3), 0.5)
    standardized = models.standardize(images, models.CIFAR10_MEAN, models.CIFAR10_STD)
    expected = (0.5 - np.asarray(models.CIFAR10_MEAN)) / np.asarray(models.CIFAR10_STD)
    chex.assert_trees_all_close(standardized[0, 0, 0], expected.astype(np.float32))
