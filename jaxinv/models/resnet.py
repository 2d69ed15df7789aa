"""CIFAR ResNets (ResNet-18/34, ResNet-18-half, ResNet-32) and layers shared by CIFAR models.

The shared parts are the input standardisation, the BatchNorm settings and the 3x3 convolution.

References: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxinv.models.stages import mark_stage

# Per-channel statistics of the CIFAR-10 training set, as used by the CRD and CMI code bases,
# whose pretrained teachers the CMI and SpaceshipNet experiments start from.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


def standardize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """Maps [0, 1] images to zero-mean, unit-variance channels.

    Args:
      images: (..., H, W, C) float32 in [0, 1].
      mean: C per-channel means.
      std: C per-channel standard deviations.

    Returns:
      (..., H, W, C) standardised images.

    References: He et al., CVPR 2016, Sec. 4.2 (per-pixel mean subtraction on CIFAR).
    """
    return (images - jnp.asarray(mean)) / jnp.asarray(std)


def batch_norm(train: bool, name: str | None = None) -> nn.BatchNorm:
    """A BatchNorm with the project's settings: momentum 0.9 and epsilon 1e-5.

    These are PyTorch's defaults (its momentum 0.1 is flax's 0.9), so running statistics
    evolve as in the reference implementations.

    Args:
      train: normalise with batch statistics and update the running ones if True.
      name: submodule name.

    Returns:
      An `nn.BatchNorm`, to be called inside the parent's compact method.

    References: Ioffe and Szegedy, "Batch Normalization", ICML 2015.
    """
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def conv3x3(features: int, strides: int = 1, name: str | None = None) -> nn.Conv:
    """A bias-free 3x3 convolution with symmetric padding 1.

    Explicit padding matches PyTorch, so ported weights see the same pixels: flax's "SAME"
    pads stride-2 convolutions on the bottom and right only.

    References: He et al., CVPR 2016, Sec. 4.2.
    """
    return nn.Conv(features, (3, 3), strides, padding=1, use_bias=False, name=name)


class BasicBlock(nn.Module):
    """Residual block of two 3x3 convolutions with BatchNorm.

    Where the shape changes, the shortcut is a 1x1 convolution with BatchNorm (option B of
    He et al.), as in the DAFL, CRD and CMI code.

    Attributes:
      features: output channels.
      strides: stride of the first convolution and of the shortcut.

    References: He et al., CVPR 2016, Sec. 3.3 and Fig. 2.
    """

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Applies the block to (N, H, W, C) feature maps."""
        y = conv3x3(self.features, self.strides, name="conv1")(x)
        y = nn.relu(batch_norm(train, "bn1")(y))
        y = conv3x3(self.features, name="conv2")(y)
        y = batch_norm(train, "bn2")(y)
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = nn.Conv(
                self.features, (1, 1), self.strides, use_bias=False, name="shortcut_conv"
            )(x)
            shortcut = batch_norm(train, "shortcut_bn")(shortcut)
        return nn.relu(y + shortcut)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: a 3x3 stem, stages of BasicBlocks, global average pooling.

    The first stage keeps the resolution and each later one halves it. The stem has
    `widths[0]` channels. ResNet-18 is `stage_sizes=(2, 2, 2, 2), widths=(64, 128, 256, 512)`
    (11.17M parameters), ResNet-32 is `stage_sizes=(5, 5, 5), widths=(16, 32, 64)` (0.47M).

    Attributes:
      num_classes: number of output logits.
      stage_sizes: blocks per stage.
      widths: channels per stage.
      mean: per-channel mean used to standardise the [0, 1] input.
      std: per-channel standard deviation used to standardise the [0, 1] input.

    References: He et al., CVPR 2016, Sec. 4.2 (CIFAR ResNets); the 4-stage variant follows
    the DAFL/CMI code (github.com/huawei-noah/Efficient-Computing, github.com/zju-vipa/CMI).
    """

    num_classes: int = 10
    stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    mean: tuple[float, ...] = CIFAR10_MEAN
    std: tuple[float, ...] = CIFAR10_STD

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Classifies images.

        Args:
          images: (N, H, W, 3) float32 in [0, 1]; H and W are 32 for CIFAR.
          train: use batch statistics and update `batch_stats` (apply with
            `mutable=["batch_stats"]`).

        Returns:
          (N, num_classes) logits.
        """
        x = standardize(images, self.mean, self.std)
        x = conv3x3(self.widths[0], name="stem_conv")(x)
        x = nn.relu(batch_norm(train, "stem_bn")(x))
        stages = zip(self.stage_sizes, self.widths, strict=True)
        for stage, (num_blocks, features) in enumerate(stages, start=1):
            for block in range(1, num_blocks + 1):
                strides = 2 if stage > 1 and block == 1 else 1
                name = f"stage{stage}_block{block}"
                x = BasicBlock(features, strides, name=name)(x, train)
            x = mark_stage(self, stage, x)
        x = x.mean(axis=(-3, -2))
        self.sow("intermediates", "features", x)
        return nn.Dense(self.num_classes, name="head")(x)
