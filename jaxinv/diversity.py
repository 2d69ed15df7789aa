"""How diverse and how real a set of images looks to the teacher that made it.

Two measures, the same for every method so that their sets can be compared:

- a layer-wise Fréchet distance (FID) between the set and real images, of the teacher's
  spatially pooled feature maps at a shallow layer (the input of its second convolution), a
  middle one (the input of its middle convolution) and the final one (the penultimate
  features): the form of Table 3 of the CMI paper, with the teacher in place of Inception, so
  that the measure needs no network the teacher was not trained with (no Inception fits 32x32
  grey digits). The input of a convolution after the first is the output of a non-linearity
  (BN-ReLU in jaxinv's BN models); the first convolution's own pooled output would be a linear
  function of the image's mean colour. Lower is closer to the real distribution.
- the mean pairwise cosine distance of the final features, in [0, 2] (in [0, 1] for
  non-negative features such as pooled ReLU outputs): higher is more diverse.

References:
  Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium", NeurIPS 2017 (the Fréchet distance); Fang et al., "Contrastive Model Inversion
  for Data-Free Knowledge Distillation", IJCAI 2021, Table 3.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import scipy.linalg

from jaxinv.teacher import Teacher, TeacherLayerError

LAYERS = ("shallow", "middle", "final")


def pooled_features(teacher: Teacher, images: np.ndarray, batch_size: int = 500
                    ) -> dict[str, np.ndarray]:
    """The teacher's features of `images` (N, H, W, C) in [0, 1]: {"shallow" (N, C_1),
    "middle" (N, C_m), "final" (N, D)}: the inputs of its second and middle convolutions
    averaged over space, and its penultimate features.

    Raises:
      TeacherLayerError: the teacher has fewer than two convolutions or sows no penultimate
        features.
    """

    @jax.jit
    def features(batch):
        conv_inputs = []

        def capture(next_fun, args, kwargs, context):
            if isinstance(context.module, nn.Conv) and context.method_name == "__call__":
                conv_inputs.append(args[0].mean(axis=(1, 2)))
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(capture):
            final = teacher.features(batch)
        hidden = conv_inputs[1:]  # the first convolution's input is the image itself
        if not hidden:
            raise TeacherLayerError(
                f"{type(teacher.model).__name__} has fewer than two convolutions, so there "
                "are no shallow or middle feature maps to compare; measure a convolutional "
                "teacher.")
        return {"shallow": hidden[0], "middle": hidden[len(hidden) // 2], "final": final}

    parts = [jax.device_get(features(images[i:i + batch_size]))
             for i in range(0, len(images), batch_size)]
    return {layer: np.concatenate([p[layer] for p in parts]).astype(np.float64)
            for layer in LAYERS}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½) of Gaussians fitted to features a (N, D)
    and b (M, D); ≥ 0, zero for identical statistics.

    As pytorch-fid computes it: where the product of the covariances is too singular for a
    finite square root, 1e-6 is added to both diagonals; an imaginary part of the root beyond
    rounding is an error.
    """
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        offset = 1e-6 * np.eye(len(cov_a))
        root = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0.0, atol=1e-3):
            raise ValueError(f"The covariances' product has a square root with imaginary part "
                             f"{np.abs(root.imag).max():.3g}: the features are degenerate.")
        root = root.real
    value = float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * root))
    return max(value, 0.0)  # rounding can leave identical statistics a hair below zero


def mean_pairwise_cosine_distance(features: np.ndarray) -> float:
    """Mean over pairs i ≠ j of 1 − cos(f_i, f_j) for features (N, D), N ≥ 2; in [0, 2].

    Σ_{i,j} cos(f_i, f_j) = ‖Σ_i f_i / ‖f_i‖‖², so no N x N matrix is formed.
    """
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    total = np.sum(unit.sum(0) ** 2)
    n = len(features)
    # Each nonzero row's cosine with itself is 1; a zero row (a dead ReLU map) adds 0.
    self_terms = np.sum(unit**2)
    return float(1.0 - (total - self_terms) / (n * (n - 1)))


def measure(teacher: Teacher, images: np.ndarray, real_images: np.ndarray) -> dict:
    """{"fid_shallow", "fid_middle", "fid_final", "pairwise_cosine_distance"} of `images`
    against `real_images`, both (N, H, W, C) in [0, 1]."""
    ours, real = pooled_features(teacher, images), pooled_features(teacher, real_images)
    results = {f"fid_{layer}": frechet_distance(ours[layer], real[layer]) for layer in LAYERS}
    results["pairwise_cosine_distance"] = mean_pairwise_cosine_distance(ours["final"])
    return results
