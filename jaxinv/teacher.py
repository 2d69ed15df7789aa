"""A frozen view of a trained classifier: logits, features, last-layer weights, BN statistics.

Synthesis methods read the teacher only through this view, so Data Impressions, CAKE and DfM
work with any differentiable model while methods that need BatchNorm statistics or features
fail with a clear message when the model has none.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxinv import models, saved_model


class TeacherLayerError(ValueError):
    """The teacher lacks a layer that a method needs (a final dense head, BatchNorm, ...)."""


# eq=False: hashed by identity, so an instance can be a static jit argument.
@dataclasses.dataclass(frozen=True, eq=False)
class Teacher:
    """A model together with its trained variables and what it was trained on; never updated.

    Attributes:
      model: a linen module, `model.apply(variables, images[, train=False]) -> logits`; a
        module whose `__call__` takes no `train` argument works too.
      variables: {"params": ..., "batch_stats": ...} (batch_stats may be empty).
      image_shape: (H, W, C) of the images it takes, values in [0, 1].
      dataset: the dataset it was trained on ("" when unknown, e.g. a user's own model).
      head_name: the name of its final linear layer in `params`, read by methods that use the
        class templates (Data Impressions); None when it has none.
    """
    model: nn.Module
    variables: dict
    image_shape: tuple[int, int, int]
    dataset: str = ""
    head_name: str | None = "head"

    @functools.cached_property
    def _apply(self):
        return models.apply_fn(self.model)

    @functools.cached_property
    def num_classes(self) -> int:
        """K, the number of logits."""
        return int(jax.eval_shape(self.logits, jnp.zeros((1, *self.image_shape))).shape[-1])

    def logits(self, images: jax.Array, variables: dict | None = None) -> jax.Array:
        """Logits (N, K) for images (N, H, W, C) in [0, 1], in inference mode.

        `variables` overrides the stored ones so that jitted code can pass them as an argument
        (a replicated device array) instead of baking them in as constants.
        """
        return self._apply(self.variables if variables is None else variables, images)

    def features(self, images: jax.Array, variables: dict | None = None) -> jax.Array:
        """Penultimate features (N, D): the input of the final classifier.

        Raises:
          TeacherLayerError: the model does not sow "features".
        """
        _, state = self._apply(self.variables if variables is None else variables, images,
                               mutable=["intermediates"])
        sown = state.get("intermediates", {}).get("features")
        if sown is None:
            raise TeacherLayerError(
                f"{type(self.model).__name__} exposes no penultimate features; add "
                "`self.sow('intermediates', 'features', x)` before its final layer.")
        return sown[0]

    def head(self, needed_by: str = "this method") -> tuple[jax.Array, jax.Array | None]:
        """The final classifier's kernel (D, K) or (1, 1, D, K), and its bias (K,) or None.

        Args:
          needed_by: the method asking, named in the error.

        Raises:
          TeacherLayerError: no layer `head_name` with a kernel in the params.
        """
        head = self.variables["params"].get(self.head_name) if self.head_name else None
        if not isinstance(head, dict) or "kernel" not in head:
            raise TeacherLayerError(
                f"{needed_by} reads the teacher's final linear layer, but "
                f"{type(self.model).__name__} has no layer named {self.head_name!r} with a "
                "kernel in its params. Pass head_name=<the name of its final nn.Dense (or 1x1 "
                "nn.Conv)> to Teacher, or use a method that needs only input gradients.")
        return head["kernel"], head.get("bias")

    def batchnorm_statistics(self, images: jax.Array, variables: dict | None = None
                             ) -> tuple[jax.Array, list[dict[str, jax.Array]]]:
        """The logits and, for each BatchNorm layer, the batch mean/var of its input and its
        running mean/var, from one forward pass in inference mode.

        Args:
          images: (N, H, W, C) in [0, 1].

        Returns:
          (logits (N, K), stats): one dict per layer, in call order, with "mean", "var" (of this
          batch's input over every axis but the channels), "running_mean", "running_var", and
          "example_mean" (N, C), each example's input averaged over its spatial axes (CMI's
          contrastive features).

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
                                 "running_mean": stats["mean"], "running_var": stats["var"],
                                 "example_mean": x.mean(tuple(range(1, x.ndim - 1)))})
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(capture):
            logits = self._apply(variables, images)
        if not captured:
            raise TeacherLayerError(
                f"{type(self.model).__name__} has no BatchNorm layers, so methods that match "
                "BN statistics (DeepInversion, CMI, SpaceshipNet) cannot use it. Use Data "
                "Impressions, CAKE or DfM, which need only input gradients.")
        return logits, captured


def from_module(model: nn.Module, variables: dict, image_shape: tuple[int, int, int], *,
                head_name: str | None = "head", dataset: str = "") -> Teacher:
    """Wraps any flax classifier with its variables as a Teacher, checked on `image_shape`.

    Args:
      model: a linen module mapping (N, H, W, C) images in [0, 1] to (N, K) logits, with or
        without a `train` argument.
      variables: its variables ({"params": ...} and optionally "batch_stats").
      image_shape: (H, W, C) of its inputs.
      head_name: its final linear layer's name, for methods that read it; None if none.
      dataset: what it was trained on, if known (stages check it against their own).

    Raises:
      ValueError: the module cannot be applied to images of `image_shape`.
    """
    variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
    teacher = Teacher(model=model, variables=variables, image_shape=tuple(image_shape),
                      dataset=dataset, head_name=head_name)
    try:
        shape = jax.eval_shape(teacher.logits, jnp.zeros((1, *teacher.image_shape))).shape
    except Exception as err:  # flax raises assorted shape errors deep inside the model
        raise ValueError(f"The teacher {type(model).__name__} cannot be applied to images of "
                         f"shape {tuple(image_shape)}: {str(err).splitlines()[0][:300]}. Pass "
                         "the image_shape it was trained on.") from err
    if len(shape) != 2:
        raise ValueError(f"The teacher {type(model).__name__} returns shape {shape} for one "
                         "image; it must return logits (N, K).")
    return teacher


def load_teacher(path: str) -> Teacher:
    """The model saved at `path` (a `jaxinv train` workdir or a model folder) as a Teacher."""
    model, variables, card = saved_model.load_model(path)
    return Teacher(model=model, variables=variables, image_shape=card.image_shape,
                   dataset=card.dataset)
