"""A small BatchNorm CNN for 32x32 digits: the CPU-scale teacher of the BN-statistics methods.

It ends in a feature map, global average pooling and a dense head, so that DeepInversion and
CMI have BatchNorm statistics to match and SpaceshipNet's class activation maps are defined.

References: Ioffe and Szegedy, "Batch Normalization", ICML 2015; Yin et al., "Dreaming to
Distill", CVPR 2020; Fang et al., "Contrastive Model Inversion", IJCAI 2021.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxinv.models.resnet import batch_norm, conv3x3
from jaxinv.models.stages import mark_stage


class BNCNN(nn.Module):
    """3x3 conv + BN + ReLU layers (the 2nd and 3rd with stride 2), global average pooling and
    a dense `head`.

    Attributes:
      num_classes: number of output logits.
      widths: channels of the four convolutions.
    """
    num_classes: int = 10
    widths: tuple[int, ...] = (16, 32, 64, 64)

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """(N, 32, 32, C) in [0, 1] -> (N, num_classes) logits; `train` uses batch statistics
        (apply with `mutable=["batch_stats"]`)."""
        x = images
        for i, (width, stride) in enumerate(zip(self.widths, (1, 2, 2, 1), strict=True)):
            x = conv3x3(width, stride, name=f"conv{i + 1}")(x)
            x = mark_stage(self, i + 1, nn.relu(batch_norm(train, f"bn{i + 1}")(x)))
        x = x.mean(axis=(-3, -2))
        self.sow("intermediates", "features", x)
        return nn.Dense(self.num_classes, name="head")(x)
