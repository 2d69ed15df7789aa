"""Gradient attacks on image classifiers: FGSM, iterative FGSM (BIM) and PGD, l∞ and l2.

One algorithm covers all three: from the clean image (or a random point of the ε-ball, for
PGD), take `num_steps` steps along the sign of the loss gradient (l∞) or its normalised
direction (l2), each followed by projection onto the ε-ball around the clean image and onto
[0, 1]. FGSM is one step of ε, iFGSM `num_steps` steps of ε/num_steps, PGD steps of
2.5ε/num_steps from a random start (`attack_config` holds these defaults).

Every iterate, the starting point included, is scored, and each example keeps its best: one
that fools the model (untargeted: not the true label; targeted: the target) before one that
does not, and among equals the one of highest loss. So more steps (the same trajectory run
longer) or more restarts never raise accuracy under attack, and ε = 0 gives the natural
accuracy exactly.

All functions are pure and jit-compatible; the whole attack is one `lax.fori_loop` per
restart, so a jitted attack is one compiled call per batch.

References:
  Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015 (FGSM).
  Kurakin et al., "Adversarial Examples in the Physical World", ICLR workshop 2017 (iFGSM).
  Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018
  (PGD, PGD adversarial training).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxinv.validation import is_count

ATTACK_NAMES = ("fgsm", "ifgsm", "pgd")
NORMS = ("linf", "l2")
# Default steps per attack and purpose, and the step size as a multiple of ε / steps.
_DEFAULT_STEPS = {("fgsm", "evaluate"): 1, ("ifgsm", "evaluate"): 10, ("pgd", "evaluate"): 40,
                  ("fgsm", "train"): 1, ("ifgsm", "train"): 10, ("pgd", "train"): 10}
_STEP_SIZE_FACTOR = {"fgsm": 1.0, "ifgsm": 1.0, "pgd": 2.5}
_TINY = 1e-12

LogitsFn = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """One attack's settings; checked on construction.

    Attributes:
      norm: "linf" or "l2", the threat model.
      eps: radius of the ball around the clean image, ≥ 0 (pixel units, images in [0, 1]).
      step_size: length of each step, > 0 (l∞: per pixel; l2: of the whole step).
      num_steps: steps per restart, ≥ 1.
      random_start: start each restart at a uniform random point of the ball.
      restarts: independent runs, ≥ 1; each example keeps its best over all of them.
    """

    norm: str
    eps: float
    step_size: float
    num_steps: int
    random_start: bool = False
    restarts: int = 1

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"Unknown attack norm {self.norm!r}; use one of {list(NORMS)}.")
        if not np.isfinite(self.eps) or self.eps < 0:
            raise ValueError(f"Attack eps must be a number ≥ 0, got {self.eps!r}.")
        if not np.isfinite(self.step_size) or self.step_size <= 0:
            raise ValueError(f"Attack step_size must be > 0, got {self.step_size!r}; for "
                             "eps = 0 any positive step size leaves the images unchanged.")
        for key in ("num_steps", "restarts"):
            if not is_count(getattr(self, key)):
                raise ValueError(f"Attack {key} must be a whole number ≥ 1, got "
                                 f"{getattr(self, key)!r}.")


def attack_config(name: str, eps: float, norm: str = "linf", purpose: str = "evaluate",
                  **overrides) -> AttackConfig:
    """The standard settings of attack `name` at radius `eps`, with any field overridden.

    Defaults: FGSM one step of ε; iFGSM 10 steps of ε/10; PGD with a random start, 40 steps
    of 2.5ε/40 to evaluate and 10 steps of 2.5ε/10 to train (Madry et al., 2018).

    Args:
      name: "fgsm", "ifgsm" or "pgd".
      eps: radius ≥ 0 of the threat model's ball.
      norm: "linf" or "l2".
      purpose: "evaluate" or "train"; only PGD's default step count depends on it.
      **overrides: AttackConfig fields (step_size, num_steps, random_start, restarts).
    """
    if name not in ATTACK_NAMES:
        raise ValueError(f"Unknown attack {name!r}; use one of {list(ATTACK_NAMES)}.")
    if purpose not in ("evaluate", "train"):
        raise ValueError(f"Unknown attack purpose {purpose!r}; use 'evaluate' or 'train'.")
    unknown = set(overrides) - {field.name for field in dataclasses.fields(AttackConfig)}
    if unknown:
        raise ValueError(f"Unknown attack settings {sorted(unknown)}; use step_size, "
                         "num_steps, random_start or restarts.")
    num_steps = overrides.pop("num_steps", _DEFAULT_STEPS[name, purpose])
    if not is_count(num_steps):
        raise ValueError(f"Attack num_steps must be a whole number ≥ 1, got {num_steps!r}.")
    # eps = 0 is a valid (null) attack; its default step is any positive number.
    default_step = _STEP_SIZE_FACTOR[name] * eps / num_steps if eps > 0 else 1.0
    return AttackConfig(norm=norm, eps=float(eps),
                        step_size=float(overrides.pop("step_size", default_step)),
                        num_steps=int(num_steps),
                        random_start=bool(overrides.pop("random_start", name == "pgd")),
                        restarts=int(overrides.pop("restarts", 1)))


def check_images(images) -> None:
    """Refuses images outside [0, 1]; attacks keep adversarial images in that box."""
    images = np.asarray(images)
    if images.size and (images.min() < 0.0 or images.max() > 1.0):
        raise ValueError(f"Attacks take images with values in [0, 1]; these range over "
                         f"[{images.min():.3g}, {images.max():.3g}]. Scale them to [0, 1] "
                         "first (jaxinv.data loads datasets that way).")


def per_example_norm(x: jax.Array) -> jax.Array:
    """l2 norm of each example, shaped to broadcast against x: (N, 1, ..., 1)."""
    return jnp.sqrt(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim)), keepdims=True))


def project(adversarial: jax.Array, clean: jax.Array, norm: str, eps) -> jax.Array:
    """Projection onto the `norm` ball of radius `eps` around `clean`, then onto [0, 1] (which
    keeps it in the ball). Shapes (N, ...); `eps` a scalar."""
    delta = adversarial - clean
    if norm == "linf":
        delta = jnp.clip(delta, -eps, eps)
    else:
        delta = delta * jnp.minimum(1.0, eps / (per_example_norm(delta) + _TINY))
    return jnp.clip(clean + delta, 0.0, 1.0)


def _random_start(rng: jax.Array, clean: jax.Array, norm: str, eps) -> jax.Array:
    """A uniform point of the ε-ball around each clean image, clipped to [0, 1]."""
    if norm == "linf":
        delta = eps * jax.random.uniform(rng, clean.shape, clean.dtype, -1.0, 1.0)
    else:
        direction_rng, radius_rng = jax.random.split(rng)
        direction = jax.random.normal(direction_rng, clean.shape, clean.dtype)
        direction = direction / (per_example_norm(direction) + _TINY)
        dims = int(np.prod(clean.shape[1:]))
        radius = jax.random.uniform(radius_rng, (clean.shape[0],) + (1,) * (clean.ndim - 1),
                                    clean.dtype) ** (1.0 / dims)
        delta = eps * radius * direction
    return jnp.clip(clean + delta, 0.0, 1.0)


def _ascent_direction(grad: jax.Array, norm: str) -> jax.Array:
    if norm == "linf":
        return jnp.sign(grad)
    return grad / (per_example_norm(grad) + _TINY)


def perturb(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array, config: AttackConfig,
            rng: jax.Array, targets: jax.Array | None = None,
            eps_scale: float | jax.Array = 1.0) -> jax.Array:
    """Adversarial images for a batch, the best iterate per example (see the module docstring).

    Args:
      logits_fn: images (N, H, W, C) -> logits (N, K); differentiable, e.g.
        `lambda x: model.apply(variables, x)`.
      images: (N, H, W, C) clean images in [0, 1].
      labels: (N,) int true labels.
      config: the attack (`attack_config`).
      rng: key for the random starts (unused without them).
      targets: optional (N,) int target labels: the attack then minimises the loss of the
        target instead of maximising that of the true label, and succeeds when the model
        predicts the target.
      eps_scale: multiplies ε and the step size; a traced scalar in [0, 1] lets adversarial
        training ramp ε up without recompiling.

    Returns:
      (N, H, W, C) adversarial images, in [0, 1] and within ε of `images` in `config.norm`.
    """
    if not isinstance(images, jax.core.Tracer):
        check_images(images)
    targeted = targets is not None
    eps, step_size = config.eps * eps_scale, config.step_size * eps_scale
    goal = targets if targeted else labels

    def scores(x):
        """Per-example (attack objective to maximise, success) at x, and the gradient."""
        def objective(x):
            logits = logits_fn(x)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, goal)
            losses = -losses if targeted else losses
            return losses.sum(), (losses, logits)

        grad, (losses, logits) = jax.grad(objective, has_aux=True)(x)
        predicted = logits.argmax(-1)
        success = predicted == targets if targeted else predicted != labels
        return losses, success, grad

    def keep_better(best, x, losses, success):
        best_x, best_loss, best_success = best
        better = (success & ~best_success) | ((success == best_success) & (losses > best_loss))
        mask = better.reshape((-1,) + (1,) * (x.ndim - 1))
        return (jnp.where(mask, x, best_x), jnp.where(better, losses, best_loss),
                best_success | success)

    def restart(index, best):
        x = images
        if config.random_start:
            x = _random_start(jax.random.fold_in(rng, index), images, config.norm, eps)

        def step(_, carry):
            x, best = carry
            losses, success, grad = scores(x)
            best = keep_better(best, x, losses, success)
            x = project(x + step_size * _ascent_direction(grad, config.norm), images,
                        config.norm, eps)
            return x, best

        x, best = lax.fori_loop(0, config.num_steps, step, (x, best))
        losses, success, _ = scores(x)
        return keep_better(best, x, losses, success)

    init = (images, jnp.full(labels.shape, -jnp.inf, images.dtype),
            jnp.zeros(labels.shape, bool))
    best_x, _, _ = lax.fori_loop(0, config.restarts, restart, init)
    return best_x
