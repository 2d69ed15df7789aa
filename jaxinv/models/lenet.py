"""LeNet-5 for 32x32 grayscale digits, and the 2x2 max-pool shared by the other models.

References: LeCun et al., "Gradient-based learning applied to document recognition", 1998;
Nayak et al., "Zero-Shot Knowledge Distillation in Deep Networks", ICML 2019 (LeNet-5 and
LeNet-5-Half, 61,706 and 35,820 parameters).
"""

from __future__ import annotations

import flax.linen as nn
import jax


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pooling with stride 2, written as a reshape and a max.

    Equals `nn.max_pool(x, (2, 2), (2, 2))` (VALID padding: an odd last row or column is
    dropped), but its gradient is a cheap select where `nn.max_pool`'s is a
    `select_and_scatter_add`, which is slow on XLA:CPU.

    Args:
      x: (..., H, W, C) feature maps; leading axes are batch axes, and may be absent.

    Returns:
      (..., H // 2, W // 2, C) maxima over each 2x2 window.

    References: LeCun et al., 1998 (subsampling layers).
    """
    *batch, height, width, channels = x.shape
    x = x[..., : height - height % 2, : width - width % 2, :]
    x = x.reshape(*batch, height // 2, 2, width // 2, 2, channels)
    return x.max(axis=(-4, -2))


class LeNet5(nn.Module):
    """LeNet-5 with ReLU: conv 5x5, pool, conv 5x5, pool, fc, fc, head.

    With the defaults it has 61,706 parameters; `conv_features=(3, 8)` gives LeNet-5-Half
    (35,820), which halves only the convolutions.

    Attributes:
      num_classes: number of output logits.
      conv_features: filters of the two 5x5 VALID convolutions.
      dense_features: widths of the two hidden fully connected layers.

    References: LeCun et al., 1998; Nayak et al., ICML 2019, Sec. 4.1.1 (Lenet-5-Half).
    """

    num_classes: int = 10
    conv_features: tuple[int, int] = (6, 16)
    dense_features: tuple[int, int] = (120, 84)

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Classifies images.

        Args:
          images: (N, 32, 32, 1) float32 in [0, 1], used as they are.
          train: unused (no BatchNorm or dropout); kept for the common model signature.

        Returns:
          (N, num_classes) logits.
        """
        del train
        x = images
        for index, features in enumerate(self.conv_features, start=1):
            x = nn.Conv(features, (5, 5), padding="VALID", name=f"conv{index}")(x)
            x = max_pool_2x2(nn.relu(x))
        x = x.reshape(*x.shape[:-3], -1)
        for index, features in enumerate(self.dense_features, start=1):
            x = nn.relu(nn.Dense(features, name=f"fc{index}")(x))
        self.sow("intermediates", "features", x)
        return nn.Dense(self.num_classes, name="head")(x)
