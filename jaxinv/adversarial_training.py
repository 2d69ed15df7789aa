"""PGD adversarial training (Madry et al., 2018): each batch replaced by attacks on the model.

A training config switches it on with an `adversarial` block:

  adversarial = dict(attack="pgd", norm="linf", eps=0.3, num_steps=10, ramp_steps=2000)

Every step attacks the current model (in evaluation mode, so BatchNorm statistics are not
updated by the attack's forward passes) inside the jitted train step, then takes the usual
gradient step on the adversarial images. ε (and the step size with it) rises linearly from 0
to `eps` over the first `ramp_steps` steps: LeNet-5 does not learn at MNIST's ε = 0.3 from
the start. `ramp_steps = 0` trains at full ε throughout.

References:
  Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from jaxinv import attacks, models

CONFIG_KEYS = ("attack", "norm", "eps", "num_steps", "ramp_steps")


@dataclasses.dataclass(frozen=True)
class AdversarialTraining:
    """The attack made on every training batch and the steps over which ε ramps up."""

    attack: attacks.AttackConfig
    ramp_steps: int = 0

    def eps_scale(self, step: jax.Array) -> jax.Array:
        """Fraction of ε used at `step` (steps done before this one): (step + 1) / ramp_steps,
        at most 1."""
        if not self.ramp_steps:
            return jnp.ones((), jnp.float32)
        return jnp.minimum(1.0, (step + 1) / self.ramp_steps).astype(jnp.float32)

    def perturb(self, model: nn.Module, variables: dict, images: jax.Array, labels: jax.Array,
                rng: jax.Array, step: jax.Array) -> jax.Array:
        """Adversarial versions of `images` (N, H, W, C) in [0, 1] against the model at its
        current `variables`; no gradient flows back into the variables through them."""
        apply = models.apply_fn(model)  # evaluation mode
        adversarial = attacks.perturb(lambda x: apply(variables, x), images,
                                      labels, self.attack, rng, eps_scale=self.eps_scale(step))
        return jax.lax.stop_gradient(adversarial)


def from_config(block: ml_collections.ConfigDict | dict | None) -> AdversarialTraining | None:
    """The `adversarial` block of a training config; None when there is none.

    Raises:
      ValueError: an unknown or missing key, or settings `attacks.attack_config` refuses.
    """
    if not block:
        return None
    block = dict(block)
    unknown, missing = set(block) - set(CONFIG_KEYS), set(CONFIG_KEYS) - set(block)
    if unknown or missing:
        raise ValueError(f"The adversarial block needs exactly the keys {list(CONFIG_KEYS)}; "
                         f"it has unknown {sorted(unknown)} and lacks {sorted(missing)}.")
    ramp_steps = block["ramp_steps"]
    if not (isinstance(ramp_steps, int) and ramp_steps >= 0):
        raise ValueError(f"adversarial.ramp_steps must be a whole number ≥ 0, got {ramp_steps!r}.")
    attack = attacks.attack_config(block["attack"], block["eps"], norm=block["norm"],
                                   purpose="train", num_steps=block["num_steps"])
    return AdversarialTraining(attack=attack, ramp_steps=ramp_steps)
