"""Classifiers used as teachers and students, and a registry to build them by name.

Every model is a linen module whose `apply(variables, images, train=False)` maps float32 NHWC
images in [0, 1] to (N, num_classes) logits. The last layer is a Dense named `head`, its input
is sown as `("intermediates", "features")`, and models with BatchNorm need
`mutable=["batch_stats"]` when applied with train=True.

References: see each model's module.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxinv.models.adda import AddaDiscriminator, AddaLeNet
from jaxinv.models.alexnet import CifarAlexNet, local_response_norm
from jaxinv.models.bn_cnn import BNCNN
from jaxinv.models.digits import DigitsCNN
from jaxinv.models.lenet import LeNet5, max_pool_2x2
from jaxinv.models.mlp import MLP
from jaxinv.models.resnet import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    BasicBlock,
    CifarResNet,
    batch_norm,
    standardize,
)
from jaxinv.models.vgg import (
    VGG8_STAGES,
    VGG11_STAGES,
    VGG16_STAGES,
    VGG19_STAGES,
    CifarVGG,
)
from jaxinv.models.vit import ViT
from jaxinv.models.wrn import WideBasicBlock, WideResNet

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "MODEL_NAMES",
    "AddaDiscriminator",
    "AddaLeNet",
    "BNCNN",
    "BasicBlock",
    "CifarAlexNet",
    "CifarResNet",
    "CifarVGG",
    "DigitsCNN",
    "LeNet5",
    "MLP",
    "ViT",
    "WideBasicBlock",
    "WideResNet",
    "batch_norm",
    "count_params",
    "apply_fn",
    "get_model",
    "init_variables",
    "local_response_norm",
    "max_pool_2x2",
    "standardize",
    "takes_train_argument",
]


def _adda_discriminator(num_classes: int, **kwargs: Any) -> AddaDiscriminator:
    """Builds the ADDA discriminator, whose two outputs are domains, not the task's classes."""
    del num_classes
    return AddaDiscriminator(**kwargs)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": LeNet5,
    "lenet5_half": functools.partial(LeNet5, conv_features=(3, 8)),
    "alexnet": CifarAlexNet,
    "alexnet_half": functools.partial(
        CifarAlexNet, conv_features=(24, 64, 96, 96, 64), dense_features=(256, 128)
    ),
    "resnet18": functools.partial(CifarResNet, stage_sizes=(2, 2, 2, 2)),
    "resnet34": functools.partial(CifarResNet, stage_sizes=(3, 4, 6, 3)),
    "resnet18_half": functools.partial(
        CifarResNet, stage_sizes=(2, 2, 2, 2), widths=(32, 64, 128, 256)
    ),
    "resnet32": functools.partial(CifarResNet, stage_sizes=(5, 5, 5), widths=(16, 32, 64)),
    "wrn16_1": functools.partial(WideResNet, depth=16, widen_factor=1),
    "wrn10_1": functools.partial(WideResNet, depth=10, widen_factor=1),
    "wrn10_1_half": functools.partial(WideResNet, depth=10, widen_factor=1, base_width=8),
    "wrn16_2": functools.partial(WideResNet, depth=16, widen_factor=2),
    "wrn40_1": functools.partial(WideResNet, depth=40, widen_factor=1),
    "wrn40_2": functools.partial(WideResNet, depth=40, widen_factor=2),
    "vgg8": functools.partial(CifarVGG, stages=VGG8_STAGES),
    "vgg11": functools.partial(CifarVGG, stages=VGG11_STAGES),
    "vgg16": functools.partial(CifarVGG, stages=VGG16_STAGES),
    "vgg19": functools.partial(CifarVGG, stages=VGG19_STAGES),
    "adda_lenet": AddaLeNet,
    "adda_discriminator": _adda_discriminator,
    "bn_cnn": BNCNN,
    "bn_cnn_half": functools.partial(BNCNN, widths=(8, 16, 32, 32)),
    "mlp": MLP,
    "vit": ViT,
    # ResNet-8 for 32x32 grey digits, standardised by MNIST's pixel statistics.
    "resnet8": functools.partial(CifarResNet, stage_sizes=(1, 1, 1), widths=(8, 16, 32),
                                 mean=(0.1307,), std=(0.3081,)),
    "digits_cnn": DigitsCNN,
    "digits_cnn_half": functools.partial(DigitsCNN, width=16),
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def get_model(name: str, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """Builds a model by name.

    Args:
      name: one of `MODEL_NAMES`. The "_half" variants halve the widths of their teacher
        ("alexnet_half" follows the ZSKD code: 417,434 parameters, not the paper's 7.23e5,
        which no halving of widths can give).
      num_classes: number of output logits; ignored by "adda_discriminator", whose two
        outputs are the source and target domains.
      **kwargs: further module attributes, e.g. `mean` and `std` for CIFAR-100 or
        `dropout_rate`.

    Returns:
      The unbound linen module.

    Raises:
      ValueError: if `name` is not a known model.

    References: Nayak et al., "Zero-Shot Knowledge Distillation in Deep Networks", ICML 2019,
    Sec. 4.1.1 (LeNet-5-Half, AlexNet-Half).
    """
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model {name!r}; valid names are: {', '.join(MODEL_NAMES)}")
    return _BUILDERS[name](num_classes=num_classes, **kwargs)


def count_params(params: Any) -> int:
    """Counts the scalars in a pytree of arrays or `jax.ShapeDtypeStruct`s.

    Args:
      params: e.g. `variables["params"]`, as returned by `model.init` or `jax.eval_shape`.

    Returns:
      The total number of elements over all leaves.

    References: Nayak et al., ICML 2019, Sec. 4.1.1 (the parameter counts it reports).
    """
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))


def takes_train_argument(model: nn.Module) -> bool:
    """True when the module's `__call__` accepts `train` (or any keyword)."""
    parameters = inspect.signature(type(model).__call__).parameters
    return "train" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD
                                        for p in parameters.values())


def apply_fn(model: nn.Module, method: str = "apply"):
    """`model.apply` (or `model.init`) that passes `train` only to modules that take it.

    Returns `fn(variables_or_rng, images, *, train=False, **kwargs)`.
    """
    bound = getattr(model, method)
    if takes_train_argument(model):
        return lambda first, images, train=False, **kwargs: bound(first, images, train=train,
                                                                   **kwargs)
    return lambda first, images, train=False, **kwargs: bound(first, images, **kwargs)


def init_variables(model: nn.Module, rng: jax.Array, image_shape: tuple[int, ...]) -> dict:
    """Model variables for images of shape (H, W, C); `batch_stats` is {} for BN-free models."""
    variables = apply_fn(model, "init")(rng, jnp.zeros((1, *image_shape), jnp.float32))
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
