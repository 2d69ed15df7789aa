"""The generator of SpaceshipNet (Table B of its supplement), which also decodes from inside.

z (N, latent_dim) → dense → (H/4, W/4, width) → BatchNorm [F1] → x2 upsampling → 3x3 conv,
BatchNorm, leaky ReLU 0.2 [F2] → x2 upsampling → 3x3 conv (width / 2), BatchNorm, leaky ReLU
[F3] → 3x3 conv to the image's channels → sigmoid. F1, F2 and F3 are the features SpaceshipNet
keeps in its pool ("before the first two upsampling layers and the last convolution"), and
:meth:`SpaceshipGenerator.decode` runs the rest of the generator from any of them, which is how
channel-exchanged features become images. Weights start from Kaiming-normal (the authors'
code) and the generator is never re-initialised.

References:
  Yu et al., "Data-Free Knowledge Distillation via Feature Exchange and Activation Region
  Constraint" (SpaceshipNet), CVPR 2023, supplement §A.2 and Table B.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

LEVELS = (1, 2, 3)  # F1, F2, F3


def _upsample(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 along H and W of (N, H, W, C)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)


class SpaceshipGenerator(nn.Module):
    """z → images in [0, 1], with the pooled features F1, F2, F3 on the way.

    Attributes:
      image_shape: (H, W, C), H and W multiples of 4.
      width: channels of F1 and F2 (Table B: 128); F3 has width // 2.
    """
    image_shape: tuple[int, int, int]
    width: int = 128

    def setup(self):
        height, width, channels = self.image_shape
        init = nn.initializers.he_normal()
        self.project = nn.Dense((height // 4) * (width // 4) * self.width, kernel_init=init)
        self.bn0 = nn.BatchNorm(momentum=0.9)
        self.conv1 = nn.Conv(self.width, (3, 3), padding=1, kernel_init=init)
        self.bn1 = nn.BatchNorm(momentum=0.9)
        self.conv2 = nn.Conv(self.width // 2, (3, 3), padding=1, kernel_init=init)
        self.bn2 = nn.BatchNorm(momentum=0.9)
        self.to_image = nn.Conv(channels, (3, 3), padding=1, kernel_init=init)

    def __call__(self, z: jax.Array, train: bool = True
                 ) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
        """Images (N, H, W, C) and (F1, F2, F3); `train` normalises by the batch's statistics
        (apply with `mutable=["batch_stats"]`), else by the running ones."""
        height, width, _ = self.image_shape
        x = self.project(z).reshape(z.shape[0], height // 4, width // 4, self.width)
        f1 = self.bn0(x, use_running_average=not train)
        f2 = self._block(self.conv1, self.bn1, f1, train)
        f3 = self._block(self.conv2, self.bn2, f2, train)
        return nn.sigmoid(self.to_image(f3)), (f1, f2, f3)

    def decode(self, features: jax.Array, level: int, train: bool = False) -> jax.Array:
        """Images from F_level (1, 2 or 3: a static int) through the layers after it."""
        x = features
        if level <= 1:
            x = self._block(self.conv1, self.bn1, x, train)
        if level <= 2:
            x = self._block(self.conv2, self.bn2, x, train)
        return nn.sigmoid(self.to_image(x))

    def _block(self, conv: nn.Conv, norm: nn.BatchNorm, x: jax.Array, train: bool) -> jax.Array:
        x = norm(conv(_upsample(x)), use_running_average=not train)
        return nn.leaky_relu(x, 0.2)
