"""Wide residual networks WRN-d-k for 32x32 CIFAR images.

References: Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxinv.models.resnet import CIFAR10_MEAN, CIFAR10_STD, batch_norm, conv3x3, standardize
from jaxinv.models.stages import mark_stage


class WideBasicBlock(nn.Module):
    """Pre-activation residual block: BN-ReLU-conv3x3-BN-ReLU-conv3x3.

    Where the shape changes, the shortcut is a 1x1 convolution of the pre-activated input.

    Attributes:
      features: output channels.
      strides: stride of the first convolution and of the shortcut.

    References: Zagoruyko and Komodakis, BMVC 2016, Fig. 1(c) and Sec. 2.
    """

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Applies the block to (N, H, W, C) feature maps."""
        preactivated = nn.relu(batch_norm(train, "bn1")(x))
        y = conv3x3(self.features, self.strides, name="conv1")(preactivated)
        y = nn.relu(batch_norm(train, "bn2")(y))
        y = conv3x3(self.features, name="conv2")(y)
        if self.strides == 1 and x.shape[-1] == self.features:
            return x + y
        shortcut = nn.Conv(
            self.features, (1, 1), self.strides, use_bias=False, name="shortcut_conv"
        )(preactivated)
        return shortcut + y


class WideResNet(nn.Module):
    """Wide ResNet WRN-d-k: 3x3 stem, three stages of wide blocks, BN-ReLU, average pooling.

    The stem has `base_width` (16) channels; the stages have `(d - 4) // 6` blocks each, with
    base_width·k, 2·base_width·k and 4·base_width·k channels.

    WRN-40-2 has 2.24M parameters, WRN-16-2 0.69M, WRN-40-1 0.56M and WRN-16-1 0.18M.

    Attributes:
      num_classes: number of output logits.
      depth: total depth d; d - 4 must be a multiple of 6.
      widen_factor: channel multiplier k.
      base_width: channels of the stem and of the first stage at k = 1 (16; 8 halves every
        width, as jaxinv's half-width students).
      mean: per-channel mean used to standardise the [0, 1] input.
      std: per-channel standard deviation used to standardise the [0, 1] input.

    References: Zagoruyko and Komodakis, BMVC 2016, Table 1; the layout follows the code used
    by CMI (github.com/zju-vipa/CMI, from github.com/polo5/ZeroShotKnowledgeTransfer).
    """

    num_classes: int = 10
    depth: int = 40
    widen_factor: int = 2
    base_width: int = 16
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

        Raises:
          ValueError: if `depth - 4` is not a positive multiple of 6.
        """
        if self.depth < 10 or (self.depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1, got {self.depth}")
        blocks_per_stage = (self.depth - 4) // 6
        x = standardize(images, self.mean, self.std)
        x = conv3x3(self.base_width, name="stem_conv")(x)
        for stage, width in enumerate((self.base_width, 2 * self.base_width,
                                       4 * self.base_width), start=1):
            for block in range(1, blocks_per_stage + 1):
                strides = 2 if stage > 1 and block == 1 else 1
                name = f"stage{stage}_block{block}"
                x = WideBasicBlock(width * self.widen_factor, strides, name=name)(x, train)
            x = mark_stage(self, stage, x)
        # Table A's L5, the map the pooling reads.
        x = mark_stage(self, 4, nn.relu(batch_norm(train, "final_bn")(x)))
        x = x.mean(axis=(-3, -2))
        self.sow("intermediates", "features", x)
        return nn.Dense(self.num_classes, name="head")(x)
