"""How diverse and how real a set of images looks to the teacher that made it.

Two measures, the same for every method so that their sets can be compared:

- a layer-wise Fréchet distance (FID) between the set and real images, of the teacher's
  spatially pooled features at a shallow layer (its first convolution), a middle one (its
  middle convolution) and the final one (the penultimate features): the form of Table 3 of the
  CMI paper, with the teacher in place of Inception, since no Inception network fits the
  32x32 grey images here. Lower is closer to the real distribution.
- the mean pairwise cosine distance of the final features, in [0, 2]: higher is more diverse.

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
    "middle" (N, C_m), "final" (N, D)}, the first and middle convolutions' outputs averaged
    over space, and the penultimate features.

    Raises:
      TeacherLayerError: the teacher has no convolution or sows no penultimate features.
    """

    @jax.jit
    def features(batch):
        convolutions = []

        def capture(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if isinstance(context.module, nn.Conv) and context.method_name == "__call__":
                convolutions.append(out.mean(axis=(1, 2)))
            return out

        with nn.intercept_methods(capture):
            final = teacher.features(batch)
        if not convolutions:
            raise TeacherLayerError(
                f"{type(teacher.model).__name__} has no convolution, so there are no shallow "
                "or middle feature maps to compare; measure a convolutional teacher.")
        return {"shallow": convolutions[0], "middle": convolutions[len(convolutions) // 2],
                "final": final}

    parts = [jax.device_get(features(images[i:i + batch_size]))
             for i in range(0, len(images), batch_size)]
    return {layer: np.concatenate([p[layer] for p in parts]).astype(np.float64)
            for layer in LAYERS}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½) of Gaussians fitted to features a (N, D)
    and b (M, D); ≥ 0, zero for identical statistics."""
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    trace = np.trace(cov_a + cov_b - 2.0 * np.real(root))
    return float(max(np.sum((mean_a - mean_b) ** 2) + trace, 0.0))


def mean_pairwise_cosine_distance(features: np.ndarray) -> float:
    """Mean over pairs i ≠ j of 1 − cos(f_i, f_j) for features (N, D), N ≥ 2; in [0, 2].

    Σ_{i,j} cos(f_i, f_j) = ‖Σ_i f_i / ‖f_i‖‖², so no N x N matrix is formed.
    """
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    total = np.sum(unit.sum(0) ** 2)
    n = len(features)
    return float(1.0 - (total - n) / (n * (n - 1)))


def measure(teacher: Teacher, images: np.ndarray, real_images: np.ndarray) -> dict:
    """{"fid_shallow", "fid_middle", "fid_final", "pairwise_cosine_distance"} of `images`
    against `real_images`, both (N, H, W, C) in [0, 1]."""
    ours, real = pooled_features(teacher, images), pooled_features(teacher, real_images)
    results = {f"fid_{layer}": frechet_distance(ours[layer], real[layer]) for layer in LAYERS}
    results["pairwise_cosine_distance"] = mean_pairwise_cosine_distance(ours["final"])
    return results
