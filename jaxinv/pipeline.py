"""teacher → synthesis → task → report: the one pipeline behind `jaxinv run`.

`run(config, workdir)` validates the whole config and every input it names before writing
anything, then runs each stage into its own place, each cached and resumable:

  teacher      `config.teacher_workdir` if set, else the teacher store (`JAXINV_TEACHER_STORE`,
               default `runs/teachers`): one folder per teacher training config, trained there
               once and reused by every run that asks for the same teacher
  synthesis/   the method `config.synthesis.method`: chunks or round checkpoints, then
               `transfer_set.npz`
  <task>/      the task `config.task`, with its own block `config[config.task]`
  figures/     a grid of the transfer set, and the method's own figures
  results.json everything above, with the paper's figures when the run matches its setting

The teacher must have been trained on the run's dataset at the run's image size; anything else
is refused with a message that says how to fix the command.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time

import ml_collections
import numpy as np

from jaxinv import data, figures, report, saved_model, synthesis, tasks, train
from jaxinv import workdir as workdir_lib
from jaxinv.teacher import Teacher, load_teacher

TEACHER_STORE_ENV = "JAXINV_TEACHER_STORE"
DEFAULT_TEACHER_STORE = os.path.join("runs", "teachers")


def teacher_training_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `jaxinv train` config of the run's teacher: its `teacher` block on the run's dataset.

    The dataset and image size are the run's own, named once at the top of the config, so a
    teacher can never be trained on another dataset than the one the run reports on.
    """
    teacher = config.teacher.copy_and_resolve_references()
    with teacher.unlocked():
        teacher.dataset = config.dataset
        teacher.image_size = config.get("image_size")
        teacher.num_classes = len(teacher_classes(config) or range(
            data.num_classes(config.dataset)))
    return teacher


def teacher_classes(config: ml_collections.ConfigDict) -> tuple[int, ...] | None:
    """The dataset's classes the run's teacher outputs, in order (None: all of them): the
    `teacher_workdir` model's, else the `teacher` block's `classes`."""
    if config.get("teacher_workdir"):
        return saved_model.read_card(config.teacher_workdir).classes
    classes = config.teacher.get("classes")
    return None if classes is None else tuple(classes)


def teacher_store_path(training_config: ml_collections.ConfigDict) -> str:
    """Where the teacher store keeps the teacher of `training_config`: named by its hash."""
    store = os.environ.get(TEACHER_STORE_ENV) or DEFAULT_TEACHER_STORE
    text = json.dumps(report.to_jsonable(training_config.to_dict()), sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return os.path.join(store, f"{training_config.dataset}_{training_config.model}_{digest}")


def check_teacher_fits(teacher: Teacher, config: ml_collections.ConfigDict, where: str) -> None:
    """Refuses a teacher trained on another dataset, image shape or number of classes."""
    image_shape = data.image_shape(config.dataset, config.get("image_size"))
    classes = teacher_classes(config)
    num_classes = len(classes) if classes else data.num_classes(config.dataset)
    problems = []
    if teacher.dataset and teacher.dataset != config.dataset:
        problems.append(f"it was trained on {teacher.dataset}, but this run's dataset is "
                        f"{config.dataset}")
    if tuple(teacher.image_shape) != image_shape:
        problems.append(f"it takes images of shape {tuple(teacher.image_shape)}, but this run's "
                        f"{config.dataset} images at image_size={config.get('image_size')} "
                        f"have shape {image_shape}")
    if teacher.num_classes != num_classes:
        problems.append(f"it has {teacher.num_classes} classes, but {config.dataset} (classes "
                        f"{classes or 'all'}) has {num_classes}")
    if problems:
        raise ValueError(f"The teacher at {where} does not fit this run: " + "; ".join(problems)
                         + f". Pass --config.dataset={teacher.dataset or '<its dataset>'} to "
                         "run on its data, or a teacher_workdir trained on "
                         f"{config.dataset}, or leave teacher_workdir empty to train one.")


def obtain_teacher(config: ml_collections.ConfigDict) -> tuple[Teacher, str]:
    """The run's teacher and where it lives: `teacher_workdir`, or trained in the store."""
    path = config.get("teacher_workdir")
    if not path:
        training_config = teacher_training_config(config)
        path = teacher_store_path(training_config)
        with workdir_lib.locked(path, wait=True):  # one process trains, the others wait
            if not saved_model.is_saved_model(path):
                train.train_and_evaluate(training_config, path, desc="teacher")
    teacher = load_teacher(path)
    check_teacher_fits(teacher, config, path)
    return teacher, path


def check_config(config: ml_collections.ConfigDict) -> None:
    """Validates the whole run config and the inputs it names; writes nothing.

    Raises:
      ValueError, FileNotFoundError: what is wrong and how to fix the command.
    """
    missing = [key for key in ("dataset", "synthesis", "task") if key not in config]
    if not (config.get("teacher") or config.get("teacher_workdir")):
        missing.append("teacher (or teacher_workdir)")
    if missing:
        raise ValueError(f"This is not a pipeline config: it lacks {', '.join(missing)}. "
                         "`jaxinv run` runs pipeline configs (e.g. zskd.py:mnist); a config "
                         "that trains one classifier (teacher.py) runs with `jaxinv train`.")
    data.check_dataset_name(config.dataset)
    if config.get("tuned_for") and config.tuned_for != config.dataset:
        raise ValueError(
            f"This config's settings (sizes, priors, teacher recipe) were chosen for "
            f"{config.tuned_for}, but dataset={config.dataset}. Use the config's {config.dataset} "
            f"variant if it has one (e.g. zskd.py:{config.dataset}), or pass "
            f"--config.tuned_for={config.dataset} to run these settings on {config.dataset} "
            "as they are.")
    image_shape = data.image_shape(config.dataset, config.get("image_size"))
    task = tasks.get_task_module(config.get("task", ""))
    if config.task not in config:
        raise ValueError(f"task={config.task!r} reads its settings from a `{config.task}` block, "
                         "which this config lacks.")
    if config.get("teacher_workdir"):
        check_teacher_fits(load_teacher(config.teacher_workdir), config, config.teacher_workdir)
    else:
        train.check_train_config(teacher_training_config(config))
    num_classes = len(teacher_classes(config) or range(data.num_classes(config.dataset)))
    num_examples = synthesis.check_config(config.synthesis, image_shape, num_classes)
    task.check_config(config, num_examples)


def _paper_figures(config: ml_collections.ConfigDict) -> dict:
    """The paper's figures, only when the run is on the paper's dataset."""
    paper = config.paper.to_dict() if "paper" in config else {}
    return ({k: v for k, v in paper.items() if k != "dataset"}
            if paper and paper.get("dataset") == config.dataset else {})


@contextlib.contextmanager
def _timed(seconds: dict, stage: str):
    start = time.perf_counter()
    yield
    seconds[stage] = time.perf_counter() - start


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The whole pipeline into `workdir`; returns (and writes) `results.json`.

    The config is validated before anything is written, and the workdir is locked against a
    second process for the whole run.
    """
    check_config(config)
    with workdir_lib.locked(workdir):
        return _run_stages(config, workdir)


def _run_stages(config: ml_collections.ConfigDict, workdir: str) -> dict:
    results_path = os.path.join(workdir, "results.json")
    if workdir_lib.open_workdir(workdir, config) and os.path.exists(results_path):
        return report.read_json(results_path)  # a finished run is final; keep its timings
    seconds: dict[str, float] = {}
    with _timed(seconds, "teacher"):
        teacher, teacher_path = obtain_teacher(config)
        test = train.load_classes(config.dataset, "test", config.get("image_size"),
                                  teacher_classes(config))
        teacher_accuracy = train.evaluate(teacher.model, teacher.variables, test.images,
                                          test.labels)["accuracy"]
    method_module = synthesis.get_method_module(config.synthesis.method)
    with _timed(seconds, "synthesis"):
        transfer_set = synthesis.synthesize_from_config(teacher, config.synthesis,
                                                        os.path.join(workdir, "synthesis"))
    with _timed(seconds, config.task):
        task_results = tasks.get_task_module(config.task).run(
            config, teacher, transfer_set, os.path.join(workdir, config.task))
    figures_dir = os.path.join(workdir, "figures")
    figures.transfer_set_grid(transfer_set, test.class_names,
                              os.path.join(figures_dir, "transfer_set.png"))
    results = {
        "dataset": config.dataset, "test_note": test.note, "teacher": teacher_path,
        "teacher_test_accuracy": teacher_accuracy, "method": transfer_set.method,
        "num_transfer_images": len(transfer_set), "task": config.task,
        "teacher_target_agreement": float(np.mean(
            transfer_set.logits.argmax(-1) == transfer_set.targets.argmax(-1))),
        config.task: task_results, "stage_seconds": seconds,
    }
    if hasattr(method_module, "describe"):
        results[config.synthesis.method] = method_module.describe(teacher, transfer_set, test,
                                                                  figures_dir)
    paper = _paper_figures(config)
    if paper:
        results["paper"] = paper
    report.write_json(results_path, results)
    return results
