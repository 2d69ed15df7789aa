"""A multilayer perceptron: no convolution, no BatchNorm; CAKE's model-agnostic teacher/student.

References: Braun, Mundt and Kersting, "Deep Classifier Mimicry without Data Access", AISTATS
2024 (the MLP of its cross-type study).
"""

from __future__ import annotations

import flax.linen as nn
import jax


class MLP(nn.Module):
    """Flattened pixels through ReLU dense layers.

    Attributes:
      num_classes: number of output logits.
      hidden: widths of the hidden layers.
    """
    num_classes: int = 10
    hidden: tuple[int, ...] = (256, 256)

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """(N, H, W, C) in [0, 1] -> (N, num_classes) logits; `train` changes nothing."""
        x = images.reshape(*images.shape[:-3], -1)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        self.sow("intermediates", "features", x)
        return nn.Dense(self.num_classes, name="head")(x)
