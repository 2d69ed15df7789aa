"""LeNet-5 for 32x32 grayscale digits, and the 2x2 max-pool shared by the other models.

References: LeCun et al., "Gradient-based learning applied to document recognition", 1998;
Nayak et al., "Zero-Shot Knowledge Distillation in Deep Networks", ICML 2019 (LeNet-5 and
LeNet-5-Half, 61,706 and 35,820 parameters).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DIMENSION_NUMBERS = {"NHWC": ("NHWC", "HWIO", "NHWC"), "NCHW": ("NCHW", "HWIO", "NCHW")}
# The spatial axes (height, width) of a feature map in each layout, counted from the end.
_SPATIAL_AXES = {"NHWC": (-3, -2), "NCHW": (-2, -1)}


def _pool_windows(x: jax.Array, layout: str) -> jax.Array:
    """(..., H, W, C) -> (..., H/2, 2, W/2, 2, C); in NCHW, (..., H, W) -> (..., H/2, 2, W/2, 2)."""
    if layout == "NHWC":
        *batch, height, width, channels = x.shape
        return x.reshape(*batch, height // 2, 2, width // 2, 2, channels)
    *batch, height, width = x.shape
    return x.reshape(*batch, height // 2, 2, width // 2, 2)


def _window_axes(layout: str) -> tuple[int, int]:
    return (-4, -2) if layout == "NHWC" else (-3, -1)


def _unpool(y: jax.Array, layout: str) -> jax.Array:
    """Adds the two window axes to a pooled map so that it broadcasts against the windows."""
    return y[..., :, None, :, None, :] if layout == "NHWC" else y[..., :, None, :, None]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool_even(x: jax.Array, layout: str) -> jax.Array:
    return _pool_windows(x, layout).max(axis=_window_axes(layout))


def _max_pool_even_fwd(x, layout):
    pooled = _max_pool_even(x, layout)
    return pooled, (x, pooled)


def _max_pool_even_bwd(layout, residuals, grad_out):
    x, pooled = residuals
    is_max = _pool_windows(x, layout) == _unpool(pooled, layout)
    # Ties share the gradient equally, exactly as autodiff of `max` does, but the count is
    # taken once here instead of through autodiff's chain of converts and reductions.
    share = _unpool(grad_out, layout) / is_max.sum(axis=_window_axes(layout), keepdims=True)
    return (jnp.where(is_max, share, 0.0).reshape(x.shape),)


_max_pool_even.defvjp(_max_pool_even_fwd, _max_pool_even_bwd)


def max_pool_2x2(x: jax.Array, layout: str = "NHWC") -> jax.Array:
    """2x2 max-pooling with stride 2, written as a reshape and a max.

    Equals `nn.max_pool(x, (2, 2), (2, 2))` (VALID padding: an odd last row or column is
    dropped). Its gradient is one select over the windows, shared equally among tied maxima
    as autodiff of `max` does. `nn.max_pool`'s gradient is a `select_and_scatter_add`, and
    plain autodiff of the reshape-max a chain of converts and reductions; both are slow on
    XLA:CPU (about 3x for a 256x28x28x6 map).

    Args:
      x: (..., H, W, C) feature maps, or (..., C, H, W) with `layout="NCHW"`; leading axes
        are batch axes, and may be absent.
      layout: "NHWC" or "NCHW".

    Returns:
      The maxima over each 2x2 window, (..., H // 2, W // 2, C) or (..., C, H // 2, W // 2).

    References: LeCun et al., 1998 (subsampling layers).
    """
    height_axis, width_axis = _SPATIAL_AXES[layout]
    height, width = x.shape[height_axis], x.shape[width_axis]
    x = lax.slice_in_dim(x, 0, height - height % 2, axis=x.ndim + height_axis)
    x = lax.slice_in_dim(x, 0, width - width % 2, axis=x.ndim + width_axis)
    return _max_pool_even(x, layout)


def _xla_conv(x: jax.Array, kernel: jax.Array, layout: str) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                    dimension_numbers=_DIMENSION_NUMBERS[layout])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_valid(x: jax.Array, kernel: jax.Array, layout: str = "NHWC") -> jax.Array:
    """A VALID, stride-1 convolution with an input gradient that is fast on XLA:CPU.

    Autodiff's input gradient of a convolution is a padded convolution with a reversed,
    transposed kernel, which XLA:CPU runs 5-14x slower than the forward one at LeNet's
    channel counts. Here, for a one-channel input (the image), it is one fused sum of shifted
    slices of the gradient; for more channels, a matmul with the kernel into columns followed
    by col2im as kh*kw strided adds. The kernel gradient is XLA's own, except for a
    one-channel input, where row-wise correlation matmuls replace XLA's slow kernel
    convolution (`_banded_single_channel_conv`). The kernel gradient is pruned when only the
    inputs are differentiated (synthesis), and the input gradient when only the kernel is
    (training the first layer).

    Args:
      x: (N, H, W, C_in), or (N, C_in, H, W) with `layout="NCHW"`.
      kernel: (kh, kw, C_in, C_out).
      layout: "NHWC" or "NCHW", of both `x` and the result.

    Returns:
      (N, H - kh + 1, W - kw + 1, C_out), or (N, C_out, H - kh + 1, W - kw + 1).
    """
    return _xla_conv(x, kernel, layout)


def _conv_valid_fwd(x, kernel, layout):
    return conv_valid(x, kernel, layout), (x, kernel)


def _single_channel_input_grad(grad_out: jax.Array, kernel: jax.Array, layout: str) -> jax.Array:
    """The input gradient of a VALID convolution of a one-channel input, as (N, H, W).

    grad_x[n, y, x] = sum over taps (i, j) and output channels o of
    grad_out[n, o, y - i, x - j] * kernel[i, j, 0, o], written as kh*kw*C_out shifted slices of
    the zero-padded gradient, each times a scalar. XLA:CPU fuses the whole sum into one loop
    over the input pixels, so nothing kh*kw times the input's size is written to memory, as
    the columns of the general path are. For LeNet-5's image layer this is what brought
    synthesis to 1.58x eager PyTorch (BENCHMARKS.md, benchmarks/bench_synthesis.py).
    """
    if layout == "NHWC":
        grad_out = jnp.moveaxis(grad_out, -1, 1)
    kernel_height, kernel_width, _, out_channels = kernel.shape
    height = grad_out.shape[-2] + kernel_height - 1
    width = grad_out.shape[-1] + kernel_width - 1
    padded = jnp.pad(grad_out, ((0, 0), (0, 0), (kernel_height - 1,) * 2, (kernel_width - 1,) * 2))
    grad_x = jnp.zeros((grad_out.shape[0], height, width), grad_out.dtype)
    for i in range(kernel_height):
        for j in range(kernel_width):
            # grad_out[n, o, y - i, x - j] at every input pixel (y, x), zero outside.
            shifted = padded[:, :, kernel_height - 1 - i:kernel_height - 1 - i + height,
                             kernel_width - 1 - j:kernel_width - 1 - j + width]
            for o in range(out_channels):
                grad_x = grad_x + shifted[:, o] * kernel[i, j, 0, o]
    return grad_x


def _banded_single_channel_conv(x: jax.Array, kernel: jax.Array, layout: str) -> jax.Array:
    """The VALID convolution of a one-channel input as kh matmuls with banded matrices.

    out[n, o, y, x] = sum over i of image[n, y + i, :] @ band_i[:, x, o], where
    band_i[v, x, o] = kernel[i, v - x, 0, o] (zero off the band). Only its transpose with
    respect to the kernel is used: per kernel row, one matmul over (n, y) that correlates
    every image column with every output column, then a contraction with the 0/1 band
    pattern. It replaces XLA:CPU's kernel-gradient convolution, which is slow for one input
    channel; with it LeNet-5 trains at 0.57x eager PyTorch (BENCHMARKS.md,
    benchmarks/bench_train.py).
    Autodiff derives the transpose, so inside shard_map it also sums over devices when the
    kernel is replicated and the images are not.
    """
    kernel_height, kernel_width = kernel.shape[:2]
    height_axis, width_axis = _SPATIAL_AXES[layout]
    height, width = x.shape[height_axis], x.shape[width_axis]
    image = x.reshape(x.shape[0], height, width)
    out_height, out_width = height - kernel_height + 1, width - kernel_width + 1
    # band_pattern[j, v, x] = 1 where v = x + j.
    band_pattern = (jnp.arange(width)[None, :, None] == jnp.arange(kernel_width)[:, None, None]
                    + jnp.arange(out_width)[None, None, :]).astype(x.dtype)
    out = 0.0
    for i in range(kernel_height):
        band = jnp.einsum("jvx,jo->vxo", band_pattern, kernel[i, :, 0, :])
        out = out + jnp.einsum("nyv,vxo->noyx", image[:, i:i + out_height], band)
    return out if layout == "NCHW" else jnp.moveaxis(out, 1, -1)


def _conv_valid_bwd(layout, residuals, grad_out):
    x, kernel = residuals
    if kernel.shape[2] == 1:
        _, kernel_vjp = jax.vjp(lambda k: _banded_single_channel_conv(x, k, layout), kernel)
        return (_single_channel_input_grad(grad_out, kernel, layout).reshape(x.shape),
                kernel_vjp(grad_out)[0])
    _, kernel_vjp = jax.vjp(lambda k: _xla_conv(x, k, layout), kernel)
    kernel_height, kernel_width = kernel.shape[:2]
    height_axis, width_axis = _SPATIAL_AXES[layout]
    height, width = grad_out.shape[height_axis], grad_out.shape[width_axis]
    # Columns (N, ..., kh, kw, C_in) from one matmul with the kernel, then moved tap-major so
    # that col2im is kh*kw in-place strided adds. The matmul keeps the examples on its long
    # (row) axis: with them on the column axis, XLA:CPU's GEMM rounds differently for
    # different batch sizes, and a chunk sharded over 8 devices no longer matches 1 device.
    if layout == "NHWC":
        columns = jnp.einsum("nhwo,ijco->nhwijc", grad_out, kernel)
        columns = jnp.moveaxis(columns, (3, 4), (0, 1))
    else:
        columns = jnp.einsum("nohw,ijco->nhwijc", grad_out, kernel)
        columns = jnp.moveaxis(columns, (3, 4, 5), (0, 1, 3))
    grad_x = jnp.zeros(x.shape, grad_out.dtype)
    for i in range(kernel_height):
        for j in range(kernel_width):
            window = (slice(None),) * (x.ndim + height_axis) + (
                slice(i, i + height), slice(j, j + width))
            grad_x = grad_x.at[window].add(columns[i, j])
    return grad_x, kernel_vjp(grad_out)[0]


conv_valid.defvjp(_conv_valid_fwd, _conv_valid_bwd)


class ConvPoolReLU(nn.Module):
    """relu(max_pool_2x2(conv(x) + bias)) on NHWC maps, computed the fast way on XLA:CPU.

    Max-pooling commutes with a per-channel bias and with ReLU (both monotone), so both act
    on the pooled map, a quarter of the size, with the same result. A single-channel input
    (the image) is convolved and pooled in NCHW; with one channel the change of layout is a
    free reshape, and the pooled map is transposed back. Inside a loop body (the synthesis
    scan) XLA:CPU keeps that convolution in NCHW and emits it itself, about 7x faster than
    the Eigen NHWC kernel it uses for one input channel; at the top level of a jitted function
    (a train step) it rewrites it to NHWC, so nothing is lost there. The parameters are
    `kernel` and `bias`, named and initialised as `nn.Conv`'s, so checkpoints of either load
    into the other.

    Attributes:
      features: output channels.
      kernel_size: (kh, kw) of the VALID convolution.
    """

    features: int
    kernel_size: tuple[int, int] = (5, 5)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """(..., H, W, C_in) -> (..., (H - kh + 1) // 2, (W - kw + 1) // 2, features)."""
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (*self.kernel_size, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        batch_shape = x.shape[:-3]  # any number of batch axes, as nn.Conv allows
        x = x.reshape(-1, *x.shape[-3:])
        if x.shape[-1] == 1:
            pooled = max_pool_2x2(conv_valid(x.reshape(x.shape[0], 1, *x.shape[1:3]), kernel,
                                             "NCHW"), "NCHW")
            pooled = jnp.moveaxis(pooled, -3, -1)  # a quarter of the conv output's size
        else:
            pooled = max_pool_2x2(conv_valid(x, kernel))
        return nn.relu(pooled + bias).reshape(*batch_shape, *pooled.shape[1:])


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
            x = ConvPoolReLU(features, name=f"conv{index}")(x)
        x = x.reshape(*x.shape[:-3], -1)
        for index, features in enumerate(self.dense_features, start=1):
            x = nn.relu(nn.Dense(features, name=f"fc{index}")(x))
        self.sow("intermediates", "features", x)
        return nn.Dense(self.num_classes, name="head")(x)
