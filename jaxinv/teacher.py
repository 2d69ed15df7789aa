"""A frozen view of a trained classifier: logits, features, last-layer weights, BN statistics.

Synthesis methods read the teacher only through this view, so Data Impressions, CAKE and DfM
work with any differentiable model while methods that need BatchNorm statistics or features
fail with a clear message when the model has none.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp


class TeacherLayerError(ValueError):
    """The teacher lacks a layer that a method needs (a final dense head, BatchNorm, ...)."""


# eq=False: hashed by identity, so an instance can be a static jit argument.
@dataclasses.dataclass(frozen=True, eq=False)
class Teacher:
    """A model together with its trained variables; never updated.

    Attributes:
      model: a linen module, `model.apply(variables, images, train=False) -> logits`.
      variables: {"params": ..., "batch_stats": ...} (batch_stats may be empty).
      image_shape: (H, W, C) of the images it takes, values in [0, 1].
    """
    model: nn.Module
    variables: dict
    image_shape: tuple[int, int, int]

    @property
    def num_classes(self) -> int:
        """K, the number of logits."""
        return int(jax.eval_shape(self.logits, jnp.zeros((1, *self.image_shape))).shape[-1])

    def logits(self, images: jax.Array, variables: dict | None = None) -> jax.Array:
        """Logits (N, K) for images (N, H, W, C) in [0, 1], in inference mode.

        `variables` overrides the stored ones so that jitted code can pass them as an argument
        (a replicated device array) instead of baking them in as constants.
        """
        return self.model.apply(self.variables if variables is None else variables, images,
                                train=False)

    def features(self, images: jax.Array, variables: dict | None = None) -> jax.Array:
        """Penultimate features (N, D): the input of the final classifier.

        Raises:
          TeacherLayerError: the model does not sow "features".
        """
        _, state = self.model.apply(self.variables if variables is None else variables, images,
                                    train=False, mutable=["intermediates"])
        sown = state.get("intermediates", {}).get("features")
        if sown is None:
            raise TeacherLayerError(
                f"{type(self.model).__name__} exposes no penultimate features; add "
                "`self.sow('intermediates', 'features', x)` before its final layer.")
        return sown[0]

    def head(self) -> tuple[jax.Array, jax.Array | None]:
        """The final classifier's kernel (D, K) or (1, 1, D, K), and its bias (K,) or None.

        Raises:
          TeacherLayerError: there is no final layer named `head` with a kernel.
        """
        head = self.variables["params"].get("head")
        if not isinstance(head, dict) or "kernel" not in head:
            raise TeacherLayerError(
                f"{type(self.model).__name__} has no accessible final linear layer: Data "
                "Impressions build their class similarity from its weights (eq. 1). Name the "
                "final nn.Dense (or 1x1 nn.Conv) `head`. Without it there is no class-similarity "
                "prior; jaxinv does not fall back to a uniform one.")
        return head["kernel"], head.get("bias")

    def batchnorm_statistics(self, images: jax.Array,
                             variables: dict | None = None) -> list[dict[str, jax.Array]]:
        """For each BatchNorm layer: the batch mean/var of its input and its running mean/var.

        Args:
          images: (N, H, W, C) in [0, 1].

        Returns:
          One dict per layer, in call order, with "mean", "var" (of this batch's input over
          every axis but the channels) and "running_mean", "running_var".

        Raises:
          TeacherLayerError: the model has no BatchNorm layer.
        """
        variables = self.variables if variables is None else variables
        captured = []

        def capture(next_fun, args, kwargs, context):
            if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
                x = args[0]
                axes = tuple(range(x.ndim - 1))
                stats = context.module.variables["batch_stats"]
                captured.append({"mean": x.mean(axes), "var": x.var(axes),
                                 "running_mean": stats["mean"], "running_var": stats["var"]})
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(capture):
            self.model.apply(variables, images, train=False)
        if not captured:
            raise TeacherLayerError(
                f"{type(self.model).__name__} has no BatchNorm layers, so methods that match "
                "BN statistics (DeepInversion, CMI, SpaceshipNet) cannot use it. Use Data "
                "Impressions, CAKE or DfM, which need only input gradients.")
        return captured


def load_teacher(workdir: str) -> Teacher:
    """The teacher trained by `jaxinv train ... --workdir workdir`, reusable by path."""
    from jaxinv import train  # imported here: train pulls in data and models

    model, variables, image_shape = train.load_trained(workdir)
    return Teacher(model=model, variables=variables, image_shape=image_shape)
