"""Model → data → model chains (Data from Model, Tables 1 and 2): M0 → D1 → M1 → … → M_L.

The pipeline's teacher is the origin M0 and its TransferSet is D1. Link i trains a fresh model
M_i of the same architecture on D_i by the l2 distance of its logits to the stored ones (DtM:
the `distill` block with `loss="logit_l2"`), then synthesises D_{i+1} from M_i with the run's
`synthesis` block (its seed advanced by i, so each link draws fresh backgrounds order and
virtual logits). Every model is scored on the real test set, clean and under l2-PGD at each ε of
`chain.eps` (`chain.attack_steps` steps of 2.5 ε / steps, Table 2's protocol).

Each link lives in `workdir/link<i>/` (`synthesis/`, `model/`, `results.json`); a rerun skips
finished links and resumes the first unfinished one where it stopped, so an interrupted chain
ends with the same models as an uninterrupted one. The first link trains `distill.num_seeds`
models (seeds distill.seed, distill.seed + 1, ...; the extra ones in `link1/seed<s>/`) to show
the spread a seed alone makes; the chain goes on from the first. `figures/chain.png` shows
real test images and the first images of every D_i, one row each, as the paper's Fig. 2.

Config (`chain` block): `length` L ≥ 1, `eps` (l2 radii, on the model's input scale),
`attack_steps`, `test_limit` (None: the whole test set; else N images, data.evaluation_subset's),
`batch_size` (of the attack), `seed` (of the attacks' random starts). The models are trained
with the `distill` block's settings and `distill.student` as their architecture.

References:
  Benz, Zhang, Karjauv and Kweon, "Data from Model: Extracting Data from Non-robust and Robust
  Models", CVPR workshops 2020, §4, Tables 1 and 2.
"""

from __future__ import annotations

import os
import time

import ml_collections
import numpy as np

from jaxinv import attacks, data, figures, parallel, report, synthesis, tasks, train
from jaxinv.tasks import distill
from jaxinv.tasks.robustness import attacked_predictions
from jaxinv.teacher import Teacher, load_teacher
from jaxinv.validation import is_count

_SHOWN = 8  # images per row of figures/chain.png
BLOCK_KEYS = ("length", "eps", "attack_steps", "test_limit", "batch_size", "seed")


def check_config(config: ml_collections.ConfigDict, num_examples: int | None = None) -> None:
    """Refuses `distill` and `chain` blocks that cannot run, before anything is written."""
    distill.check_config(config, num_examples)
    block = tasks.task_block(config, "chain", BLOCK_KEYS)
    if not is_count(block.length):
        raise ValueError(f"chain.length must be a whole number ≥ 1 (links after the origin "
                         f"model), got {block.length!r}.")
    if not is_count(block.attack_steps):
        raise ValueError(f"chain.attack_steps must be a whole number ≥ 1, got "
                         f"{block.attack_steps!r}.")
    for eps in block.eps:
        if not eps >= 0:
            raise ValueError(f"chain.eps holds {eps}; the l2 radii must be ≥ 0 (0: clean).")
    if block.test_limit is not None and not is_count(block.test_limit):
        raise ValueError(f"chain.test_limit must be None (all) or a whole number ≥ 1, got "
                         f"{block.test_limit!r}.")
    if not is_count(block.batch_size):
        raise ValueError(f"chain.batch_size must be a whole number ≥ 1, got "
                         f"{block.batch_size!r}.")
    parallel.check_divisible(block.batch_size, "chain.batch_size")


def score(model: Teacher, test: data.Dataset, block: ml_collections.ConfigDict) -> dict:
    """{"test_accuracy", "pgd_accuracy": {ε: %}} of `model` on `test` (clean, then l2-PGD)."""
    test = data.evaluation_subset(test, block.test_limit)
    images, labels = test.images, test.labels
    logits = train.predict_logits(model.model, model.variables, images)
    curve = {}
    for eps in block.eps:
        attack = attacks.attack_config("pgd", eps, norm="l2", num_steps=block.attack_steps)
        predicted = attacked_predictions(model.model, model.variables, images, labels, attack,
                                         batch_size=block.batch_size, seed=block.seed)
        curve[f"{eps:g}"] = float(100.0 * np.mean(predicted == labels))
    return {"test_accuracy": float(100.0 * np.mean(logits.argmax(-1) == labels)),
            "pgd_accuracy": curve}


def _first_link_seeds(config, teacher: Teacher, transfer_set, test: data.Dataset,
                      link_dir: str) -> dict:
    """Every seed's test accuracy at the first link, as `distill.seed_spread` gives it
    ({"seeds", "mean", "sd", ...}); the first seed's model is the chain's M1."""
    block = config.distill
    seeds = list(range(block.seed, block.seed + block.num_seeds))
    accuracies = [report.read_json(os.path.join(link_dir, "results.json"))["test_accuracy"]]
    for seed in seeds[1:]:
        seed_config = block.copy_and_resolve_references()
        seed_config.seed = seed
        accuracies.append(distill.distill_and_evaluate(
            block.student, teacher, transfer_set.images, test, config=seed_config,
            workdir=os.path.join(link_dir, f"seed{seed}"),
            teacher_logits=transfer_set.logits)["test_accuracy"])
    return distill.seed_spread(seeds, accuracies)


def run(config: ml_collections.ConfigDict, teacher: Teacher, transfer_set,
        workdir: str) -> dict:
    """Runs the chain from `teacher` (M0) and `transfer_set` (D1); returns every model's
    scores, {"links": [M0, M1, ...]}, each {"test_accuracy", "pgd_accuracy", and for i ≥ 1
    "transfer_agreement" (how often D_i's stored top class is M_{i-1}'s virtual one) and
    "seconds" (the link's wall time)}, and
    {"first_link_seeds"} when `distill.num_seeds` > 1."""
    block = config.chain
    test = data.load_dataset(config.dataset, "test", image_size=config.get("image_size"))
    origin_path = os.path.join(workdir, "origin.json")
    if not os.path.exists(origin_path):
        report.write_json(origin_path, score(teacher, test, block))
    links = [report.read_json(origin_path)]
    previous, current_set = teacher, transfer_set
    shown = {f"{config.dataset} (M0's data)": test.images[:_SHOWN]}
    extras = {}
    for index in range(1, block.length + 1):
        link_dir = os.path.join(workdir, f"link{index}")
        start = time.perf_counter()
        if index > 1:
            link_synthesis = config.synthesis.copy_and_resolve_references()
            link_synthesis.seed = config.synthesis.seed + index - 1
            current_set = synthesis.synthesize_from_config(previous, link_synthesis,
                                                           os.path.join(link_dir, "synthesis"))
        results_path = os.path.join(link_dir, "results.json")
        model_dir = os.path.join(link_dir, "model")
        if not os.path.exists(results_path):
            distill.distill_and_evaluate(
                config.distill.student, previous, current_set.images, test, workdir=model_dir,
                config=config.distill, teacher_logits=current_set.logits)
            scores = score(load_teacher(model_dir), test, block)
            scores["transfer_agreement"] = float(np.mean(
                current_set.logits.argmax(-1) == current_set.targets.argmax(-1)))
            # Extraction, training and scoring; a resumed link counts only this process's part.
            scores["seconds"] = time.perf_counter() - start
            report.write_json(results_path, scores)
        links.append(report.read_json(results_path))
        if index == 1 and config.distill.num_seeds > 1:
            extras["first_link_seeds"] = _first_link_seeds(config, previous, current_set,
                                                            test, link_dir)
        shown[f"D{index}"] = current_set.images[:_SHOWN]
        previous = load_teacher(model_dir)
    figures.image_rows(shown, os.path.join(workdir, "figures", "chain.png"))
    return {"links": links, **extras}

