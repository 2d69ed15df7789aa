"""Pieces shared by the methods that distil a student between synthesis rounds (ADI, CMI)."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import optax

from jaxinv import losses, train
from jaxinv.synthesis import dirichlet
from jaxinv.teacher import Teacher


def shuffled_class_targets(num_classes: int, num_per_class: int,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One-hot targets (N, K) and classes (N,), num_per_class of each, in a seeded random order
    so that every batch holds a mix of classes (as the reference codes' random labels do)."""
    targets, classes, _ = dirichlet.one_hot_targets(num_classes, num_per_class)
    order = np.random.default_rng(seed).permutation(len(classes))
    return np.asarray(targets)[order], np.asarray(classes)[order]


def distil_step(student: nn.Module, tx: optax.GradientTransformation, teacher: Teacher,
                teacher_variables, state: train.ModelState, pool: jax.Array,
                filled: jax.Array, rng: jax.Array, *, batch_size: int,
                temperature: float) -> tuple[train.ModelState, jax.Array]:
    """One KD step of `student` (KL at `temperature`, ×τ²) on a batch drawn uniformly from the
    first `filled` images of `pool`; returns the state and the step's loss."""
    draw_rng, dropout_rng = jax.random.split(rng)
    images = pool[jax.random.randint(draw_rng, (batch_size,), 0, filled)]
    teacher_logits = teacher.logits(images, teacher_variables)
    state, measurements = train.gradient_step(
        student, tx, state, images,
        lambda logits: losses.distillation_loss(logits, teacher_logits, temperature),
        dropout_rng)
    return state, measurements["loss"]
