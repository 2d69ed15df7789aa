"""Knowledge distillation of a student on a TransferSet (or, as a reference, on real data).

The student never sees a label: it matches the teacher's softened outputs (eq. 4 of the Data
Impressions paper). With augmentation on, each batch is warped on the fly, per example, and the
teacher is asked again for its logits on the warped images, inside the same jitted step.

References:
  Nayak et al., "Mining Data Impressions from Deep Models as Substitute for the Unavailable
  Training Data", TPAMI 2021, eq. 4 and §4.1; Hinton et al., "Distilling the Knowledge in a
  Neural Network", 2015.
"""

from __future__ import annotations

import functools
import os
import time

import flax.linen as nn
import ml_collections
import numpy as np

from jaxinv import augment, data, losses, models, report, train
from jaxinv.teacher import Teacher


def kd_batch_fn(teacher: Teacher, augment_config: augment.AugmentConfig):
    """`(images, targets, rng, teacher_variables) -> (augmented images, teacher logits)`."""
    def batch_fn(images, targets, rng, teacher_variables):
        del targets  # the stored logits belong to the unaugmented images
        images = augment.augment_batch(rng, images, augment_config)
        return images, teacher.logits(images, teacher_variables)

    return batch_fn


def distill(student: nn.Module, teacher: Teacher, images: np.ndarray, *,
            config: ml_collections.ConfigDict, workdir: str,
            teacher_logits: np.ndarray | None = None) -> train.TrainState:
    """Trains `student` to match `teacher` on `images` (N, H, W, C) in [0, 1]; resumable.

    Args:
      config: `fit` settings (see :func:`jaxinv.train.fit`) plus `temperature` τ > 0,
        `scale_by_t2` and an `augment` block (see :class:`jaxinv.augment.AugmentConfig`).
      teacher_logits: (N, K) the teacher's logits on `images` if already known (a TransferSet
        carries them); computed otherwise. Unused when augmentation is on.
    """
    if config.temperature <= 0:
        raise ValueError(f"distill.temperature τ must be > 0, got {config.temperature}.")
    augment_config = augment.from_config(config.augment)
    loss_fn = functools.partial(losses.distillation_loss, temperature=config.temperature,
                                scale_by_t2=config.scale_by_t2)
    if augment_config.is_identity:
        if teacher_logits is None:
            teacher_logits = train.predict_logits(teacher.model, teacher.variables, images,
                                                  config.eval_batch_size)
        return train.fit(student, images, teacher_logits, loss_fn=loss_fn, config=config,
                         workdir=workdir)
    placeholder_targets = np.zeros(len(images), np.int32)
    return train.fit(student, images, placeholder_targets, loss_fn=loss_fn, config=config,
                     workdir=workdir, batch_fn=kd_batch_fn(teacher, augment_config),
                     batch_args=teacher.variables)


def distill_and_evaluate(student_name: str, teacher: Teacher, images: np.ndarray,
                         test: data.Dataset, *, config: ml_collections.ConfigDict,
                         workdir: str, teacher_logits: np.ndarray | None = None) -> dict:
    """Distils a fresh `student_name` on `images`, then scores it on the real `test` set.

    Returns:
      {"test_accuracy" (%), "seconds", "num_images"}; also written to `workdir/results.json`.
    """
    for what, shape in (("transfer images", images.shape[1:]),
                        (f"{test.name} test images", test.images.shape[1:])):
        if tuple(shape) != tuple(teacher.image_shape):
            raise ValueError(f"The {what} have shape {tuple(shape)} but the teacher and student "
                             f"take {tuple(teacher.image_shape)}; resize them or synthesise "
                             "from a teacher with the student's input shape.")
    student = models.get_model(student_name, num_classes=teacher.num_classes)
    train.check_input_shape(student, images.shape[1:])
    os.makedirs(workdir, exist_ok=True)
    start = time.perf_counter()
    state = distill(student, teacher, images, config=config, workdir=workdir,
                    teacher_logits=teacher_logits)
    seconds = time.perf_counter() - start
    metrics = train.evaluate(student, state.variables, test.images, test.labels,
                             config.eval_batch_size)
    results = {"test_accuracy": metrics["accuracy"], "seconds": seconds,
               "num_images": int(len(images))}
    report.write_json(os.path.join(workdir, "results.json"), results)
    return results
