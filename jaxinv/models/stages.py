"""Stage outputs that class activation maps read (SpaceshipNet's mSARC).

A model calls :func:`mark_stage` on the output of each stage whose CAM is compared, the last
being the map its global average pooling reads. The map is sown under
`intermediates/"stages"` (in call order) and passed through `perturb("stage<i>")`, which adds
a zero map when a "perturbations" collection is given and is a no-op otherwise: the gradient
of a class score with respect to those zeros is its gradient with respect to every stage at
once, from one backward pass (Grad-CAM's weights, :func:`jaxinv.cam.stage_cams`).
"""

from __future__ import annotations

import flax.linen as nn
import jax

STAGES = "stages"


def mark_stage(module: nn.Module, index: int, x: jax.Array) -> jax.Array:
    """Exposes `x` (N, h, w, C), the output of stage `index` (from 1), and returns it."""
    x = module.perturb(f"stage{index}", x)
    module.sow("intermediates", STAGES, x)
    return x
