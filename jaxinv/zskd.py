"""Zero-shot knowledge distillation (ZSKD) end to end: teacher → impressions → student → report.

`zskd_and_evaluate(config, workdir)` is the task behind `jaxinv run` for the Data Impressions
tables. Each stage writes into its own subfolder and resumes on rerun:

  workdir/teacher/     the teacher (trained here unless `config.teacher_workdir` names one)
  workdir/synthesis/   chunks and the final transfer_set.npz (or none: `synthesis.from_workdir`
                       names a finished run whose impressions this one distils from)
  workdir/student/     the distilled student (student_seed<s>/: more seeds, `distill.num_seeds`)
  workdir/student_kd/, student_ce/   optional real-data references (Tables 1-3)
  workdir/figures/     similarity heatmap and impression grid (Figs. 1 and 2)
  workdir/stage_seconds.json   each finished stage's wall seconds, kept across reruns
                       (`jaxinv.stage_times`); results.json lists in `resumed_stages` those an
                       earlier process was stopped in, whose seconds are a lower bound

References:
  Nayak et al., "Mining Data Impressions from Deep Models as Substitute for the Unavailable
  Training Data", TPAMI 2021, §3, §4.1, Appendices A and B.
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections
import numpy as np

from jaxinv import data, distill, figures, losses, models, report, stage_times, train
from jaxinv import workdir as workdir_lib
from jaxinv.synthesis import dirichlet, impressions, runner
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.teacher import Teacher, load_teacher


def obtain_teacher(config: ml_collections.ConfigDict, workdir: str) -> tuple[Teacher, dict]:
    """Loads the teacher at `config.teacher_workdir`, or trains `config.teacher` in workdir."""
    if config.get("teacher_workdir"):
        path = config.teacher_workdir
    else:
        path = os.path.join(workdir, "teacher")
        train.train_and_evaluate(config.teacher, path)
    return load_teacher(path), report.read_json(os.path.join(path, "results.json"))


def impression_targets(teacher: Teacher, config: ml_collections.ConfigDict
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets (N, K), classes (N,) and betas (N,) for `config.kind` "dirichlet" or "one_hot".

    Dirichlet targets are sampled around the class similarity of the teacher's final layer;
    one-hot targets give Class Impressions (Appendix A).
    """
    if config.kind == "one_hot":
        targets, classes, betas = dirichlet.one_hot_targets(teacher.num_classes,
                                                            config.num_per_class)
    elif config.kind == "dirichlet":
        similarity = dirichlet.class_similarity(teacher.head()[0])
        targets, classes, betas = dirichlet.dirichlet_targets(
            jax.random.key(config.seed), similarity, tuple(config.betas), config.num_per_class,
            floor=config.floor)
    else:
        raise ValueError(f"synthesis.kind must be 'dirichlet' or 'one_hot', got {config.kind!r}.")
    return np.asarray(targets), np.asarray(classes), np.asarray(betas)


def synthesize_impressions(teacher: Teacher, config: ml_collections.ConfigDict,
                           workdir: str) -> TransferSet:
    """Data (or Class) Impressions for `teacher` per the `synthesis` config; resumable."""
    if config.temperature <= 0:
        raise ValueError(f"synthesis.temperature τ must be > 0, got {config.temperature}.")
    targets, classes, betas = impression_targets(teacher, config)
    method = impressions.impressions_method(
        teacher, temperature=config.temperature, num_steps=config.num_steps,
        learning_rate=config.learning_rate, schedule=config.schedule,
        pixel_l2=config.pixel_l2, pixel_l1=config.pixel_l1, tv_l2=config.tv_l2,
        jitter=config.jitter, init_resolution=config.init_resolution,
        name="data_impressions" if config.kind == "dirichlet" else "class_impressions")
    return runner.synthesize(method, teacher, targets, classes=classes, betas=betas,
                             seed=config.seed, chunk_size=config.chunk_size, workdir=workdir,
                             steps_per_call=config.steps_per_call)


def _impressions_config(config: dict, workdir: str) -> dict:
    """What makes two runs' impressions the same: the teacher (by where it lives; a run without
    `teacher_workdir` trains its own in workdir/teacher) and the synthesis config."""
    teacher = config.get("teacher_workdir") or os.path.join(workdir, "teacher")
    return {"dataset": config.get("dataset"), "image_size": config.get("image_size"),
            "teacher": os.path.abspath(teacher),
            "synthesis": {k: v for k, v in config.get("synthesis", {}).items()
                          if k != "from_workdir"}}


def check_impressions_source(config: ml_collections.ConfigDict, workdir: str) -> str:
    """The TransferSet path of `config.synthesis.from_workdir`, checked to hold this config's
    impressions: a finished run with the same teacher and synthesis settings.

    Raises:
      ValueError: the source has no finished synthesis, or made its impressions differently.
    """
    source = config.synthesis.from_workdir
    path = os.path.join(source, "synthesis", "transfer_set.npz")
    config_path = os.path.join(source, workdir_lib.CONFIG_FILE)
    if not (os.path.exists(path) and os.path.exists(config_path)):
        raise ValueError(f"synthesis.from_workdir={source!r} holds no finished synthesis "
                         f"({path} is missing). Run that zskd config to the end first, or "
                         "leave synthesis.from_workdir empty to synthesise in this workdir.")
    diffs = workdir_lib.config_differences(
        _impressions_config(report.read_json(config_path), source),
        _impressions_config(report.to_jsonable(config.to_dict()), workdir))
    if diffs:
        raise ValueError(f"The impressions in {source} were made with another teacher or "
                         "synthesis config, so this run cannot reuse them:\n  "
                         + "\n  ".join(diffs) + "\nMatch those settings (a teacher trained "
                         f"inside that run is {os.path.join(source, 'teacher')}), or leave "
                         "synthesis.from_workdir empty to synthesise in this workdir.")
    return path


def obtain_impressions(teacher: Teacher, config: ml_collections.ConfigDict,
                       workdir: str) -> TransferSet:
    """The impressions of `config.synthesis.from_workdir` if set, else synthesised here."""
    if config.synthesis.get("from_workdir"):
        return TransferSet.load(check_impressions_source(config, workdir))
    return synthesize_impressions(teacher, config.synthesis, os.path.join(workdir, "synthesis"))


def similarity_check(teacher: Teacher, test: data.Dataset) -> dict:
    """Appendix B: weight-based class similarity against one measured on real test features."""
    features = np.concatenate([
        np.asarray(jax.jit(teacher.features)(test.images[i:i + 1000]))
        for i in range(0, len(test.images), 1000)])
    measured = dirichlet.feature_class_similarity(features, test.labels, teacher.num_classes)
    from_weights = dirichlet.class_similarity(teacher.head()[0])
    return {"off_diagonal": dirichlet.similarity_agreement(from_weights, measured),
            "whole_matrix": dirichlet.similarity_agreement(from_weights, measured,
                                                           include_diagonal=True)}


def real_data_reference(kind: str, student_name: str, teacher: Teacher, train_set: data.Dataset,
                        test: data.Dataset, config: ml_collections.ConfigDict,
                        workdir: str) -> dict:
    """Student-CE (labels) or Student-KD (teacher soft targets) on the real training set."""
    if kind == "kd":
        return distill.distill_and_evaluate(student_name, teacher, train_set.images, test,
                                            config=config, workdir=workdir)
    student = models.get_model(student_name, num_classes=teacher.num_classes)
    start = time.perf_counter()
    state = train.fit(student, train_set.images, train_set.labels,
                      loss_fn=losses.cross_entropy, config=config, workdir=workdir)
    accuracy = train.evaluate(student, state.variables, test.images, test.labels,
                              config.eval_batch_size)["accuracy"]
    return {"test_accuracy": accuracy, "seconds": time.perf_counter() - start,
            "num_images": len(train_set.images)}


def distill_students(config: ml_collections.ConfigDict, teacher: Teacher,
                     transfer_set: TransferSet, test: data.Dataset, workdir: str) -> list[float]:
    """Test accuracies of `config.distill.num_seeds` students distilled on `transfer_set`.

    Student i uses seed `distill.seed + i` for its initialisation, batch order and
    augmentation; the first lives in workdir/student/, the others in workdir/student_seed<s>/.
    One student is the paper's protocol; several measure how much of a difference between two
    configs the choice of seed alone can make.
    """
    accuracies = []
    for offset in range(config.distill.num_seeds):
        seed = config.distill.seed + offset
        distill_config = config.distill.copy_and_resolve_references()
        distill_config.seed = seed
        subdir = "student" if offset == 0 else f"student_seed{seed}"
        accuracies.append(distill.distill_and_evaluate(
            config.student, teacher, transfer_set.images, test, config=distill_config,
            workdir=os.path.join(workdir, subdir),
            teacher_logits=transfer_set.logits)["test_accuracy"])
    return accuracies


def seed_spread(seeds, accuracies: list[float]) -> dict:
    """{"seeds", "test_accuracies", "mean", "sd" (sample), "min", "max"} of per-seed accuracies."""
    values = np.asarray(accuracies, np.float64)
    return {"seeds": [int(s) for s in seeds], "test_accuracies": [float(v) for v in values],
            "mean": float(values.mean()), "sd": float(values.std(ddof=1)),
            "min": float(values.min()), "max": float(values.max())}


def _check_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    models.get_model(config.student)  # unknown names fail before anything is written
    if not config.get("teacher_workdir"):
        models.get_model(config.teacher.model)
    synthesis = config.synthesis
    if synthesis.temperature <= 0 or config.distill.temperature <= 0:
        raise ValueError("temperatures τ must be > 0 (the paper uses 20).")
    num_seeds = config.distill.num_seeds
    if not isinstance(num_seeds, int) or isinstance(num_seeds, bool) or num_seeds < 1:
        raise ValueError(f"distill.num_seeds must be a whole number ≥ 1 (students distilled "
                         f"with seeds distill.seed, distill.seed + 1, ...), got {num_seeds!r}.")
    if synthesis.kind == "dirichlet":
        dirichlet.check_betas(tuple(synthesis.betas), synthesis.num_per_class)
    if synthesis.get("from_workdir"):
        check_impressions_source(config, workdir)


def zskd_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The whole ZSKD experiment; writes results.json and figures into `workdir`."""
    _check_config(config, workdir)
    dataset = config.dataset
    test = data.load_dataset(dataset, "test", image_size=config.image_size)
    results_path = os.path.join(workdir, "results.json")
    if workdir_lib.open_workdir(workdir, config) and os.path.exists(results_path):
        return report.read_json(results_path)  # a finished run is final; keep its timings
    times = stage_times.StageTimes(workdir)

    with times.stage("teacher"):
        teacher, teacher_results = obtain_teacher(config, workdir)
    if tuple(test.images.shape[1:]) != tuple(teacher.image_shape):
        raise ValueError(f"The teacher takes images of shape {teacher.image_shape} but the "
                         f"{dataset} test set has {test.images.shape[1:]}; set image_size "
                         "to match.")

    with times.stage("synthesis"):
        transfer_set = obtain_impressions(teacher, config, workdir)
    agreement = float(np.mean(transfer_set.logits.argmax(-1) == transfer_set.targets.argmax(-1)))

    with times.stage("distill"):
        student_accuracies = distill_students(config, teacher, transfer_set, test, workdir)

    results = {
        "dataset": dataset, "test_note": test.note,
        "teacher_test_accuracy": teacher_results["test_accuracy"],
        "zskd_student_test_accuracy": student_accuracies[0],
        "num_impressions": len(transfer_set), "method": transfer_set.method,
        "teacher_target_agreement": agreement,
        # With the paper's concentration β·c_k, a target's largest entry is often another class.
        "target_argmax_is_drawn_class": float(np.mean(
            transfer_set.targets.argmax(-1) == transfer_set.classes)),
        "paper": dict(config.get("paper", {})),
        "stage_seconds": times.seconds,
    }
    if len(student_accuracies) > 1:
        results["zskd_student_seeds"] = seed_spread(
            range(config.distill.seed, config.distill.seed + len(student_accuracies)),
            student_accuracies)
    references = config.get("references", ())
    if references:
        train_set = data.load_dataset(dataset, "train", image_size=config.image_size)
        for kind in references:
            with times.stage(f"student_{kind}"):
                results[f"student_{kind}_test_accuracy"] = real_data_reference(
                    kind, config.student, teacher, train_set, test, config.distill,
                    os.path.join(workdir, f"student_{kind}"))["test_accuracy"]
    if times.resumed:
        results["resumed_stages"] = times.resumed
    if config.get("similarity_check", True):
        results["similarity_check"] = similarity_check(teacher, test)
    figures_dir = os.path.join(workdir, "figures")
    if transfer_set.method == "data_impressions":
        figures.similarity_heatmap(np.asarray(dirichlet.class_similarity(teacher.head()[0])),
                                   test.class_names, os.path.join(figures_dir, "similarity.png"))
    figures.impression_grid(transfer_set.images, transfer_set.targets, transfer_set.classes,
                            test.class_names,
                            os.path.join(figures_dir, "impressions.png"))
    report.write_json(results_path, results)
    return results

