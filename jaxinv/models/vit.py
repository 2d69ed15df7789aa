"""A small Vision Transformer for 32x32 images: patches, a class token, pre-norm blocks.

References: Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale", ICLR 2021; Braun, Mundt and Kersting, AISTATS 2024 (the ViT of CAKE's
cross-type study: patches of 4, 3 blocks, 4 heads).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class EncoderBlock(nn.Module):
    """Pre-norm self-attention and GELU MLP, each with a residual connection."""
    num_heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        """(N, T, D) -> (N, T, D)."""
        y = nn.LayerNorm()(tokens)
        tokens = tokens + nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(y, y)
        y = nn.LayerNorm()(tokens)
        y = nn.Dense(tokens.shape[-1])(nn.gelu(nn.Dense(self.mlp_dim)(y)))
        return tokens + y


class ViT(nn.Module):
    """Non-overlapping patches embedded linearly, a learned class token and positions, encoder
    blocks, and a linear head on the final class token.

    Attributes:
      num_classes: number of output logits.
      patch_size: side of the square patches (H and W must be multiples).
      dim: token width.
      depth: encoder blocks.
      num_heads: attention heads per block (dim must be a multiple).
      mlp_dim: hidden width of each block's MLP.
    """
    num_classes: int = 10
    patch_size: int = 4
    dim: int = 48
    depth: int = 3
    num_heads: int = 4
    mlp_dim: int = 96

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        """(N, H, W, C) in [0, 1] -> (N, num_classes) logits; `train` changes nothing (no
        dropout)."""
        patches = nn.Conv(self.dim, (self.patch_size,) * 2, strides=self.patch_size,
                          padding="VALID", name="patch_embedding")(images)
        tokens = patches.reshape(patches.shape[0], -1, self.dim)
        class_token = self.param("class_token", nn.initializers.zeros, (1, 1, self.dim))
        tokens = jnp.concatenate(
            [jnp.broadcast_to(class_token, (tokens.shape[0], 1, self.dim)), tokens], axis=1)
        tokens = tokens + self.param("positions", nn.initializers.normal(0.02),
                                     (1, tokens.shape[1], self.dim))
        for _ in range(self.depth):
            tokens = EncoderBlock(self.num_heads, self.mlp_dim)(tokens)
        x = nn.LayerNorm()(tokens[:, 0])
        self.sow("intermediates", "features", x)
        return nn.Dense(self.num_classes, name="head")(x)
