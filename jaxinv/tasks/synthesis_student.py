"""Scores the student a synthesis method trained alongside (SpaceshipNet's), on the test set.

Some methods distil their student inside the synthesis loop, from images that exist only
there (SpaceshipNet decodes channel-exchanged pooled features at every step), so the student
is the method's product and the distill task, which trains a fresh one on the TransferSet,
would measure something else. `synthesize` saves such a student as `synthesis/models/student`;
this task reports its test accuracy and, when both models mark their stages, Table C of
SpaceshipNet's supplement: the difference between the teacher's and the student's class
activation maps (the last stage's, for the teacher's predicted class) on the test images,
resized to the image and rescaled to [0, 255], as MAE and MSE.

With `real_images` = n > 0 it also distils a fresh student, by the `real_distill` block (the
distill task's settings), on n real training images drawn at random (seeded by the synthesis
seed): the real-data column of Table E, where the number of optimised images varies.

Config (`synthesis_student` block): `cam_limit` (test images the CAM difference is measured
on, data.evaluation_subset's; None: all), `eval_batch_size`; optionally `real_images` (0: off)
and `real_distill`.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from jaxinv import cam, data, models, report, saved_model, synthesis, tasks, train
from jaxinv.models.stages import STAGES
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.tasks import distill
from jaxinv.teacher import Teacher
from jaxinv.validation import is_count

BLOCK_KEYS = ("cam_limit", "eval_batch_size")
STUDENT = "student"


def check_config(config: ml_collections.ConfigDict, num_examples: int | None = None) -> None:
    """Refuses a block that cannot run, and a method that trains no student."""
    del num_examples
    block = tasks.task_block(config, "synthesis_student", BLOCK_KEYS)
    if block.cam_limit is not None and not is_count(block.cam_limit):
        raise ValueError(f"synthesis_student.cam_limit must be None (all) or a whole number "
                         f"≥ 1, got {block.cam_limit!r}.")
    if not is_count(block.eval_batch_size):
        raise ValueError(f"synthesis_student.eval_batch_size must be a whole number ≥ 1, got "
                         f"{block.eval_batch_size!r}.")
    real_images = block.get("real_images", 0)
    if real_images:
        if not is_count(real_images):
            raise ValueError(f"synthesis_student.real_images must be 0 (off) or a whole number "
                             f"of real training images ≥ 1, got {real_images!r}.")
        if "real_distill" not in block:
            raise ValueError("synthesis_student.real_images needs a real_distill block (the "
                             "distill task's settings) to train the real-data student with.")
        real_distill = distill.with_defaults(block.real_distill)
        models.get_model(real_distill.student, num_classes=data.num_classes(config.dataset))
        train.check_fit_config(real_distill, real_images, "synthesis_student.real_distill.")
        available = len(data.load_dataset(config.dataset, "train").labels)
        if real_images > available:
            raise ValueError(f"synthesis_student.real_images = {real_images}, but the "
                             f"{config.dataset} training set holds {available} images; ask for "
                             "at most that many.")
    if config.synthesis.method != "spaceshipnet":
        raise ValueError(f"task='synthesis_student' scores the student a synthesis method "
                         f"trains, but synthesis.method={config.synthesis.method!r} trains "
                         "none; use task='distill' to train one on its TransferSet.")


def _marks_stages(model, variables: dict, images: np.ndarray) -> bool:
    """Whether `model` marks stages (a student trained without mSARC need not)."""
    _, state = jax.eval_shape(lambda v: models.apply_fn(model)(v, images,
                                                               mutable=["intermediates"]),
                              variables)
    return STAGES in state.get("intermediates", {})


def last_stage_cams(model, variables: dict, images: np.ndarray, classes: np.ndarray,
                    batch_size: int) -> np.ndarray:
    """The last marked stage's CAM (eq. A2, N × h × w) of each image for its class, in
    batches; a forward pass only, as no Grad-CAM is needed."""
    apply = models.apply_fn(model)

    @jax.jit
    def one_batch(batch, batch_classes):
        _, state = apply(variables, batch, mutable=["intermediates"])
        return cam.head_cam(state["intermediates"][STAGES][-1],
                            variables["params"]["head"]["kernel"], batch_classes)

    return np.concatenate([np.asarray(one_batch(images[i:i + batch_size],
                                                classes[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])


def run(config: ml_collections.ConfigDict, teacher: Teacher, transfer_set: TransferSet,
        workdir: str) -> dict:
    """{"student_test_accuracy", "cam_difference": {"mae", "mse", "num_images"}}, and with
    `real_images`, {"real_images_student": {"test_accuracy", "num_images", ...}}."""
    del transfer_set
    results_path = os.path.join(workdir, "results.json")
    if os.path.exists(results_path):
        return report.read_json(results_path)
    block = config.synthesis_student
    run_workdir = os.path.dirname(os.path.abspath(workdir))
    module, variables, _ = saved_model.load_model(
        os.path.join(run_workdir, "synthesis", synthesis.MODELS_DIR, STUDENT))
    test = data.load_dataset(config.dataset, "test", image_size=config.get("image_size"))
    accuracy = train.evaluate(module, variables, test.images, test.labels,
                              block.eval_batch_size)["accuracy"]
    results = {"student_test_accuracy": accuracy}
    if _marks_stages(teacher.model, teacher.variables, test.images[:1]) and _marks_stages(
            module, variables, test.images[:1]):
        subset = data.evaluation_subset(test, block.cam_limit)
        classes = train.predict_logits(teacher.model, teacher.variables, subset.images,
                                       block.eval_batch_size).argmax(-1)
        teacher_cams = last_stage_cams(teacher.model, teacher.variables, subset.images,
                                       classes, block.eval_batch_size)
        student_cams = last_stage_cams(module, variables, subset.images, classes,
                                       block.eval_batch_size)
        difference = cam.cam_difference(teacher_cams, student_cams, subset.images.shape[1:3])
        results["cam_difference"] = {"mae": float(difference["mae"]),
                                     "mse": float(difference["mse"]),
                                     "num_images": int(len(subset.labels))}
    if block.get("real_images", 0):
        train_set = data.load_dataset(config.dataset, "train",
                                      image_size=config.get("image_size"))
        real = data.subsample(train_set, block.real_images, seed=config.synthesis.seed)
        results["real_images_student"] = distill.distill_and_evaluate(
            block.real_distill.student, teacher, real.images, test,
            config=block.real_distill, workdir=os.path.join(workdir, "real_images_student"))
    os.makedirs(workdir, exist_ok=True)
    report.write_json(results_path, results)
    return results
