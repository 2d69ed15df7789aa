"""Small CNNs for scikit-learn's bundled 8x8 digits, used by the embedded `jaxinv demo`."""

from __future__ import annotations

import flax.linen as nn
import jax


class DigitsCNN(nn.Module):
    """Two 3x3 conv layers and one hidden dense layer for (N, 8, 8, 1) images in [0, 1].

    `width` scales every layer, so a teacher (width 32) and a half-width student share one
    definition, as LeNet-5 and LeNet-5-half do in the Data Impressions paper.

    References:
      Nayak et al., "Zero-Shot Knowledge Distillation in Deep Networks", ICML 2019 (§4.1: a
      teacher and a student with half the filters).
    """
    num_classes: int = 10
    width: int = 32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        x = nn.relu(nn.Conv(self.width, (3, 3))(images))
        x = nn.relu(nn.Conv(2 * self.width, (3, 3), strides=2)(x))
        x = x.reshape(*x.shape[:-3], -1)  # works batched and unbatched (under vmap)
        x = nn.relu(nn.Dense(4 * self.width)(x))
        self.sow("intermediates", "features", x)
        return nn.Dense(self.num_classes, name="head")(x)
