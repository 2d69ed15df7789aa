"""The generator and projection head of Contrastive Model Inversion (CMI).

The generator is the DCGAN-style one of the CMI code base (zju-vipa/DataFree): a latent code
z through a dense layer to a (H/4 x W/4 x 128) map, two nearest-neighbour x2 upsamplings each
followed by a 3x3 convolution, BatchNorm and a leaky ReLU (128 then 64 channels), and a 3x3
convolution to the image's channels with a sigmoid, so images lie in [0, 1]. CMI draws it
afresh for every batch with :func:`init_generator`: convolution and dense weights N(0, 0.02),
BatchNorm scales N(1, 0.02), biases 0. Its BatchNorm always normalises with the batch's own
statistics (a fresh generator has no running ones worth keeping).

The projection head is the MLP d -> d -> 256 that embeds a sample's teacher features for the
instance-discrimination loss; it is never reset.

References:
  Fang, Song, Wang, Shen, Wang and Song, "Contrastive Model Inversion for Data-Free Knowledge
  Distillation", IJCAI 2021, §3.2; Radford et al., "Unsupervised Representation Learning with
  Deep Convolutional GANs", ICLR 2016; Chen et al., "A Simple Framework for Contrastive
  Learning of Visual Representations", ICML 2020 (the MLP head).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def _upsample(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 along H and W of (N, H, W, C)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)


class CMIGenerator(nn.Module):
    """z (N, latent_dim) -> images (N, H, W, C) in [0, 1]; H and W multiples of 4.

    Attributes:
      image_shape: (H, W, C) of the images.
      width: channels of the first map (the reference: 128; the second has half).
    """
    image_shape: tuple[int, int, int]
    width: int = 128

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        height, width, channels = self.image_shape
        start = (height // 4, width // 4)
        x = nn.Dense(start[0] * start[1] * self.width, name="project")(z)
        x = x.reshape(z.shape[0], *start, self.width)
        x = nn.BatchNorm(use_running_average=False, momentum=0.9, name="bn0")(x)
        for index, features in enumerate((self.width, self.width // 2)):
            x = nn.Conv(features, (3, 3), padding=1, name=f"conv{index + 1}")(_upsample(x))
            x = nn.BatchNorm(use_running_average=False, momentum=0.9, name=f"bn{index + 1}")(x)
            x = nn.leaky_relu(x, 0.2)
        return nn.sigmoid(nn.Conv(channels, (3, 3), padding=1, name="to_image")(x))


def init_generator(generator: CMIGenerator, rng: jax.Array, latent_dim: int) -> dict:
    """The reference's initialisation: weights N(0, 0.02), BN scales N(1, 0.02), biases 0.

    Returns:
      {"params": ...}; the generator's BatchNorm keeps no running statistics worth restoring.
    """
    shapes = jax.eval_shape(generator.init, jax.random.key(0),
                            jnp.zeros((2, latent_dim)))["params"]
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    keys = jax.random.split(rng, len(leaves))

    def draw(path, shape, key):
        name = path[-1].key
        if name == "bias":
            return jnp.zeros(shape.shape, shape.dtype)
        mean = 1.0 if name == "scale" else 0.0
        return mean + 0.02 * jax.random.normal(key, shape.shape, shape.dtype)

    params = [draw(path, shape, key) for (path, shape), key in zip(leaves, keys, strict=True)]
    return {"params": jax.tree_util.tree_unflatten(treedef, params)}


class ProjectionHead(nn.Module):
    """features (N, D) -> embeddings (N, out_dim): Dense(D), ReLU, Dense(out_dim)."""
    out_dim: int = 256

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        x = nn.relu(nn.Dense(features.shape[-1], name="hidden")(features))
        return nn.Dense(self.out_dim, name="out")(x)
