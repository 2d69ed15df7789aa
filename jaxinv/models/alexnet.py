"""AlexNet with BatchNorm for 32x32 CIFAR images, the ZSKD / Data Impressions teacher.

References: Nayak et al., "Zero-Shot Knowledge Distillation in Deep Networks", ICML 2019,
Sec. 4.1.1, and its code at github.com/vcl-iisc/ZSKD (model_alex_full.py, model_alex_half.py);
Krizhevsky et al., "ImageNet Classification with Deep Convolutional Neural Networks", 2012.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxinv.models.resnet import CIFAR10_MEAN, CIFAR10_STD, batch_norm, standardize

_KERNEL_SIZES = (5, 5, 3, 3, 3)
# Convolutions followed by LRN and a 3x3 stride-2 max-pool; the fifth is pooled without LRN.
_LRN_AFTER = (1, 2)
_POOL_AFTER = (1, 2, 5)


def local_response_norm(
    x: jax.Array,
    depth_radius: int = 2,
    bias: float = 1.0,
    alpha: float = 1e-4,
    beta: float = 0.75,
) -> jax.Array:
    """Local response normalisation across channels, as `tf.nn.local_response_normalization`.

    Each activation is divided by `(bias + alpha * sum(x[c - r : c + r + 1] ** 2)) ** beta`,
    the sum running over the `2 * depth_radius + 1` neighbouring channels that exist.

    Args:
      x: (..., C) activations.
      depth_radius: half-width r of the channel window.
      bias: additive constant, > 0.
      alpha: scale of the squared sum.
      beta: exponent.

    Returns:
      Normalised activations, same shape as `x`.

    References: Krizhevsky et al., 2012, Sec. 3.3.
    """
    channels = x.shape[-1]
    padding = [(0, 0)] * (x.ndim - 1) + [(depth_radius, depth_radius)]
    squares = jnp.pad(jnp.square(x), padding)
    window_sum = sum(
        squares[..., offset : offset + channels] for offset in range(2 * depth_radius + 1)
    )
    return x / (bias + alpha * window_sum) ** beta


class CifarAlexNet(nn.Module):
    """AlexNet for 32x32 inputs: five conv and two dense layers with BatchNorm, and a head.

    As in the ZSKD code: conv -> ReLU [-> LRN] [-> max-pool 3x3/2] -> BatchNorm for the
    convolutions, dense -> ReLU -> dropout -> BatchNorm for the hidden dense layers. The
    defaults give the teacher (1,659,178 parameters, the paper's 1.65e6). Halving every width
    except the head, `conv_features=(24, 64, 96, 96, 64), dense_features=(256, 128)`, gives
    the authors' AlexNet-Half (417,434 parameters; the paper's 7.23e5 cannot be reached by
    halving widths, see `jaxinv.models.get_model`).

    Attributes:
      num_classes: number of output logits.
      conv_features: filters of the five convolutions (kernel sizes 5, 5, 3, 3, 3).
      dense_features: widths of the two hidden dense layers.
      dropout_rate: dropout probability after each hidden dense layer; with train=True,
        apply needs `rngs={"dropout": key}` when it is positive.
      mean: per-channel mean used to standardise the [0, 1] input.
      std: per-channel standard deviation used to standardise the [0, 1] input.

    References: Nayak et al., ICML 2019, Sec. 4.1.1; github.com/vcl-iisc/ZSKD.
    """

    num_classes: int = 10
    conv_features: tuple[int, int, int, int, int] = (48, 128, 192, 192, 128)
    dense_features: tuple[int, int] = (512, 256)
    dropout_rate: float = 0.5
    mean: tuple[float, ...] = CIFAR10_MEAN
    std: tuple[float, ...] = CIFAR10_STD

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Classifies images.

        Args:
          images: (N, 32, 32, 3) float32 in [0, 1].
          train: use batch statistics, update `batch_stats` (apply with
            `mutable=["batch_stats"]`) and apply dropout.

        Returns:
          (N, num_classes) logits.
        """
        x = standardize(images, self.mean, self.std)
        layers = zip(self.conv_features, _KERNEL_SIZES, strict=True)
        for index, (features, kernel_size) in enumerate(layers, start=1):
            x = nn.Conv(features, (kernel_size, kernel_size), name=f"conv{index}")(x)
            x = nn.relu(x)
            if index in _LRN_AFTER:
                x = local_response_norm(x)
            if index in _POOL_AFTER:
                x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")
            x = batch_norm(train, f"bn{index}")(x)
        x = x.reshape(*x.shape[:-3], -1)
        for index, features in enumerate(self.dense_features, start=len(_KERNEL_SIZES) + 1):
            x = nn.relu(nn.Dense(features, name=f"fc{index}")(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            x = batch_norm(train, f"bn{index}")(x)
        self.sow("intermediates", "features", x)
        return nn.Dense(self.num_classes, name="head")(x)
