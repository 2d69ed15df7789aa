"""VGG networks with BatchNorm for 32x32 CIFAR images (VGG-8, -11, -16 and -19).

References: Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015; the CIFAR layout (one dense layer, no 4096-wide ones) is that of the
CRD code, github.com/HobbitLong/RepDistiller (models/vgg.py), which CMI reuses.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxinv.models.lenet import max_pool_2x2
from jaxinv.models.resnet import CIFAR10_MEAN, CIFAR10_STD, batch_norm, standardize
from jaxinv.models.stages import mark_stage

# Channels of each 3x3 convolution, stage by stage; VGG-8 is CRD's configuration "S", the others
# are Simonyan and Zisserman's configurations A, D and E.
VGG8_STAGES = ((64,), (128,), (256,), (512,), (512,))
VGG11_STAGES = ((64,), (128,), (256, 256), (512, 512), (512, 512))
VGG16_STAGES = ((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3)
VGG19_STAGES = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)

# Side of the maps the last stage works on; larger maps are pooled once more before it.
_LAST_STAGE_SIZE = 4


class CifarVGG(nn.Module):
    """VGG: stages of conv3x3-BN-ReLU with 2x2 max-pools, global average pooling, one head.

    Pooling follows CRD: after every stage but the last two, and before the last one only
    when its maps would be larger than 4x4, so 32x32 and 64x64 inputs both reach it at 4x4.
    VGG-11 has 9.23M parameters, VGG-8 3.92M, VGG-16 14.73M and VGG-19 20.04M.

    Attributes:
      num_classes: number of output logits.
      stages: channels of each convolution, per stage (five stages).
      mean: per-channel mean used to standardise the [0, 1] input.
      std: per-channel standard deviation used to standardise the [0, 1] input.

    References: Simonyan and Zisserman, ICLR 2015, Table 1; Tian et al., "Contrastive
    Representation Distillation", ICLR 2020 (VGG-8).
    """

    num_classes: int = 10
    stages: tuple[tuple[int, ...], ...] = VGG11_STAGES
    mean: tuple[float, ...] = CIFAR10_MEAN
    std: tuple[float, ...] = CIFAR10_STD

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """Classifies images.

        Args:
          images: (N, H, W, 3) float32 in [0, 1]; H and W are 32 (CIFAR) or 64.
          train: use batch statistics and update `batch_stats` (apply with
            `mutable=["batch_stats"]`).

        Returns:
          (N, num_classes) logits.
        """
        x = standardize(images, self.mean, self.std)
        last_stage = len(self.stages)
        for stage, stage_features in enumerate(self.stages, start=1):
            if stage == last_stage and x.shape[-2] > _LAST_STAGE_SIZE:
                x = max_pool_2x2(x)
            for layer, features in enumerate(stage_features, start=1):
                x = nn.Conv(features, (3, 3), padding=1, name=f"stage{stage}_conv{layer}")(x)
                x = nn.relu(batch_norm(train, f"stage{stage}_bn{layer}")(x))
            # The four stages of distinct sizes (the fourth runs at the fifth's size).
            if stage < 4 or stage == last_stage:
                x = mark_stage(self, min(stage, 4), x)
            if stage < last_stage - 1:
                x = max_pool_2x2(x)
        x = x.mean(axis=(-3, -2))
        self.sow("intermediates", "features", x)
        return nn.Dense(self.num_classes, name="head")(x)
