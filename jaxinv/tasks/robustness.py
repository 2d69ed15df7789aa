"""Adversarial robustness of students distilled on a TransferSet, and of their teacher.

The task distils `distill.num_seeds` students as the `distill` task does (its `distill`
block), then attacks the teacher and every student on the real test set: natural accuracy,
and accuracy and fooling rate under each attack of the `robustness` block, plus PGD accuracy
against ε on `eps_curve_limit` test images (data.evaluation_subset). With a PGD-trained teacher
(`adversarial` block of its training config) this is Table 4 of Data Impressions.

`robustness` block:
  norm, eps: the threat model ("linf" or "l2") and its radius (the paper does not state ε;
    the community's standard is l∞ 0.3 for MNIST, 0.1 for Fashion-MNIST, 8/255 for CIFAR-10).
  attacks: names from `jaxinv.attacks.ATTACK_NAMES`, each with its standard settings.
  test_limit: attack n test images, a fixed shuffle's first (None: all).
  batch_size: images per compiled attack call (divisible by the devices).
  seed: of the random starts.
  eps_curve: radii of the PGD curve (empty: no curve); eps_curve_limit: its test images.

Fooling rate is the fraction of test images whose predicted label the attack changes.

References: Nayak et al., "Mining Data Impressions from Deep Models as Substitute for the
Unavailable Training Data", TPAMI 2021, §4.1.7 and Table 4.
"""

from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from jaxinv import attacks, data, figures, models, parallel, report, saved_model, tasks, train
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.tasks import distill
from jaxinv.teacher import Teacher
from jaxinv.validation import is_count

BLOCK_KEYS = ("norm", "eps", "attacks", "test_limit", "batch_size", "seed", "eps_curve",
              "eps_curve_limit")


@functools.partial(jax.jit, static_argnums=(0, 1))
def _attacked_predictions(model: nn.Module, config: attacks.AttackConfig, variables: dict,
                          images: jax.Array, labels: jax.Array, rng: jax.Array) -> jax.Array:
    apply = models.apply_fn(model)
    adversarial = attacks.perturb(lambda x: apply(variables, x), images, labels, config, rng)
    return apply(variables, adversarial).argmax(-1)


def attacked_predictions(model: nn.Module, variables: dict, images: np.ndarray,
                         labels: np.ndarray, config: attacks.AttackConfig, *,
                         batch_size: int = 500, seed: int = 0) -> np.ndarray:
    """Predicted labels (N,) on attacked versions of host `images` (N, H, W, C) in [0, 1].

    One compiled call per batch of `batch_size` (sharded over `data`; the last batch padded),
    the random starts of batch b drawn from `fold_in(key(seed), b)`.
    """
    attacks.check_images(images)
    parallel.check_divisible(batch_size, "robustness.batch_size")
    variables = parallel.replicate(variables)
    rng = jax.random.key(seed)
    predictions = []
    batches = data.padded_batches({"images": np.asarray(images, np.float32),
                                   "labels": np.asarray(labels, np.int32)}, batch_size)
    for index, (batch, num_real) in enumerate(batches):
        predicted = _attacked_predictions(
            model, config, variables, batch["images"], batch["labels"],
            parallel.replicate(jax.random.fold_in(rng, index)))
        predictions.append(np.asarray(predicted)[:num_real])
    return np.concatenate(predictions)


def evaluate_robustness(model: nn.Module, variables: dict, images: np.ndarray,
                        labels: np.ndarray, attack_configs: dict[str, attacks.AttackConfig], *,
                        batch_size: int = 500, seed: int = 0) -> dict:
    """Natural accuracy, and accuracy and fooling rate under each attack, all in %.

    Args:
      model, variables: the classifier, in evaluation mode.
      images: (N, H, W, C) in [0, 1]; labels: (N,) int.
      attack_configs: name -> attack (`attacks.attack_config`).
      batch_size, seed: as for :func:`attacked_predictions`.

    Returns:
      {"natural_accuracy", "<name>": {"accuracy", "fooling_rate"} for each attack}.
    """
    natural = train.predict_logits(model, variables, images, batch_size).argmax(-1)
    results = {"natural_accuracy": float(100.0 * np.mean(natural == labels))}
    for name, config in attack_configs.items():
        predicted = attacked_predictions(model, variables, images, labels, config,
                                         batch_size=batch_size, seed=seed)
        results[name] = {"accuracy": float(100.0 * np.mean(predicted == labels)),
                         "fooling_rate": float(100.0 * np.mean(predicted != natural))}
    return results


def pgd_accuracy_curve(model: nn.Module, variables: dict, images: np.ndarray,
                       labels: np.ndarray, eps_values, norm: str, *, batch_size: int = 500,
                       seed: int = 0) -> list[float]:
    """PGD (evaluation defaults) accuracy (%) at each ε of `eps_values`."""
    return [float(100.0 * np.mean(attacked_predictions(
        model, variables, images, labels, attacks.attack_config("pgd", eps, norm=norm),
        batch_size=batch_size, seed=seed) == labels)) for eps in eps_values]


def check_config(config: ml_collections.ConfigDict, num_examples: int | None = None) -> None:
    """Refuses `distill` and `robustness` blocks that cannot run, before anything is written."""
    distill.check_config(config, num_examples)
    block = tasks.task_block(config, "robustness", BLOCK_KEYS)
    for name in block.attacks:
        attacks.attack_config(name, block.eps, norm=block.norm)
    for eps in block.eps_curve:
        attacks.attack_config("pgd", eps, norm=block.norm)
    for key in ("batch_size", "eps_curve_limit", "seed"):
        if not (is_count(block[key]) or (key == "seed" and block[key] == 0)):
            raise ValueError(f"robustness.{key} must be a whole number ≥ 1, got {block[key]!r}.")
    if block.test_limit is not None and not is_count(block.test_limit):
        raise ValueError(f"robustness.test_limit must be None (all) or a whole number ≥ 1, got "
                         f"{block.test_limit!r}.")
    parallel.check_divisible(block.batch_size, "robustness.batch_size")


def _mean_and_spread(per_seed: list[dict]) -> dict:
    """The mean and standard deviation (ddof 1) over seeds of every figure in `per_seed`,
    element-wise for lists (the ε curve)."""
    def leaves(entry, prefix=""):
        for key, value in entry.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    stacked = {}
    for entry in per_seed:
        for name, value in leaves(entry):
            stacked.setdefault(name, []).append(value)
    summary = {}
    for name, values in stacked.items():
        values = np.asarray(values, np.float64)
        sd = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros_like(values[0])
        summary[name] = {"mean": values.mean(axis=0).tolist(), "sd": sd.tolist()}
    return summary


def run(config: ml_collections.ConfigDict, teacher: Teacher, transfer_set: TransferSet,
        workdir: str) -> dict:
    """Distils the students, then attacks them and the teacher; figures cached per model."""
    distilled = distill.run(config, teacher, transfer_set, workdir)
    block = config.robustness
    test = data.load_dataset(config.dataset, "test", image_size=config.get("image_size"))
    attacked = data.evaluation_subset(test, block.test_limit)
    images, labels = attacked.images, attacked.labels
    curve_set = data.evaluation_subset(test, min(block.eps_curve_limit, len(labels)))
    attack_configs = {name: attacks.attack_config(name, block.eps, norm=block.norm)
                      for name in block.attacks}
    seeds = range(config.distill.seed, config.distill.seed + config.distill.num_seeds)
    evaluated = {"teacher": (teacher.model, teacher.variables)}
    for seed in seeds:
        module, variables, _ = saved_model.load_model(os.path.join(workdir, f"student_seed{seed}"))
        evaluated[f"student_seed{seed}"] = (module, variables)
    figures_of = {}
    for name, (module, variables) in evaluated.items():
        path = os.path.join(workdir, f"attacks_{name}.json")
        if not os.path.exists(path):
            entry = evaluate_robustness(module, variables, images, labels, attack_configs,
                                        batch_size=block.batch_size, seed=block.seed)
            entry["pgd_eps_curve"] = pgd_accuracy_curve(
                module, variables, curve_set.images, curve_set.labels, block.eps_curve, block.norm,
                batch_size=block.batch_size, seed=block.seed)
            report.write_json(path, entry)
        figures_of[name] = report.read_json(path)
    students = [figures_of[f"student_seed{seed}"] for seed in seeds]
    results = {
        "norm": block.norm, "eps": block.eps, "num_test_images": int(len(images)),
        "attacks": {name: vars(c) for name, c in attack_configs.items()},
        "eps_curve": list(block.eps_curve), "eps_curve_images": int(len(curve_set.labels)),
        "teacher": figures_of["teacher"],
        "students": {"seeds": list(seeds), "per_seed": students,
                     "summary": _mean_and_spread(students)},
        "student_test_accuracy": distilled["student_test_accuracy"],
    }
    if block.eps_curve:
        curves = {"teacher": figures_of["teacher"]["pgd_eps_curve"],
                  "students (mean)": results["students"]["summary"]["pgd_eps_curve"]["mean"]}
        figures.accuracy_curves(block.eps_curve, curves,
                                os.path.join(workdir, "pgd_accuracy_vs_eps.png"),
                                xlabel=f"ε ({block.norm})", ylabel="PGD test accuracy (%)",
                                title=f"PGD-40 accuracy against ε, {config.dataset}")
    if report.is_writer():
        report.write_text(os.path.join(workdir, "table.md"), results_table(results) + "\n")
    return results


def results_table(results: dict) -> str:
    """A markdown table of the teacher and the students' mean (sd) figures."""
    names = list(results["attacks"])
    header = ["model", "A_nat"] + [f"{n} {k}" for n in names for k in ("A_adv", "F.R.")]
    teacher = results["teacher"]
    rows = [["teacher", f"{teacher['natural_accuracy']:.2f}"]
            + [f"{teacher[n][k]:.2f}" for n in names for k in ("accuracy", "fooling_rate")]]
    summary = results["students"]["summary"]

    def cell(key):
        return f"{summary[key]['mean']:.2f} ({summary[key]['sd']:.2f})"

    rows.append([f"students (n={len(results['students']['seeds'])}, mean (sd))",
                 cell("natural_accuracy")]
                + [cell(f"{n}.{k}") for n in names for k in ("accuracy", "fooling_rate")])
    return report.markdown_table(header, rows)
