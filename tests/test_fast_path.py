"""Every model with a fast path on XLA:CPU (`ConvPoolReLU`, `conv_valid`, `max_pool_2x2`) gives
the logits and gradients of the same network written with plain flax (`nn.Conv`,
`nn.max_pool`), up to float rounding, on the same variables."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import losses, models


class PlainLeNet5(nn.Module):
    """LeNet-5 as `jaxinv.models.LeNet5`, with flax's own convolution and pooling."""
    conv_features: tuple[int, int] = (6, 16)

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = images
        for index, features in enumerate(self.conv_features, start=1):
            x = nn.Conv(features, (5, 5), padding="VALID", name=f"conv{index}")(x)
            x = nn.relu(nn.max_pool(x, (2, 2), (2, 2)))
        x = x.reshape(x.shape[0], -1)
        for index, features in enumerate((120, 84), start=1):
            x = nn.relu(nn.Dense(features, name=f"fc{index}")(x))
        return nn.Dense(10, name="head")(x)


class PlainAddaEncoder(nn.Module):
    """`AddaLeNet` (inference, no dropout) with `nn.max_pool`."""

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = nn.relu(nn.max_pool(nn.relu(nn.Conv(20, (5, 5), padding="VALID", name="conv1")(
            images)), (2, 2), (2, 2)))
        x = nn.max_pool(nn.relu(nn.Conv(50, (5, 5), padding="VALID", name="conv2")(x)),
                        (2, 2), (2, 2))
        x = nn.relu(nn.Dense(500, name="fc3")(x.reshape(x.shape[0], -1)))
        return nn.Dense(10, name="head")(x)


CASES = {"lenet5": (PlainLeNet5(), (32, 32, 1)),
         "lenet5_half": (PlainLeNet5(conv_features=(3, 8)), (32, 32, 1)),
         "adda_lenet": (PlainAddaEncoder(), (28, 28, 1))}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fast_path_matches_plain_flax(name, random_variables):
    fast = models.get_model(name, num_classes=10)
    plain, image_shape = CASES[name]
    variables = random_variables(fast, image_shape)
    images = jnp.asarray(np.random.default_rng(0).uniform(size=(8, *image_shape)), jnp.float32)
    labels = jnp.arange(8) % 10

    def loss(model, params, images):
        return losses.cross_entropy(models.apply_fn(model)({"params": params}, images), labels)

    for model in (fast, plain):
        chex.assert_trees_all_equal_shapes(
            variables["params"], jax.eval_shape(
                lambda m=model: models.init_variables(m, jax.random.key(0), image_shape))[
                    "params"])
    fast_logits = models.apply_fn(fast)(variables, images)
    plain_logits = plain.apply({"params": variables["params"]}, images)
    chex.assert_trees_all_close(fast_logits, plain_logits, rtol=1e-5, atol=1e-5)
    fast_grads = jax.grad(loss, argnums=(1, 2))(fast, variables["params"], images)
    plain_grads = jax.grad(loss, argnums=(1, 2))(plain, variables["params"], images)
    chex.assert_trees_all_close(fast_grads, plain_grads, rtol=1e-4, atol=1e-5)
