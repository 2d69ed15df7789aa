"""Student accuracy against transfer-set size: DIs vs real data (Fig. 3) and vs CIs (Fig. 4).

Impressions are synthesised once at the largest size and nested, class-balanced subsets are
distilled, without augmentation, as in the paper's figures; the real-data curve distils on
the same number of (seeded, shuffled) real training images.

References:
  Nayak et al., "Mining Data Impressions from Deep Models", TPAMI 2021, Figs. 3 and 4.
"""

from __future__ import annotations

import copy
import os

import ml_collections
import numpy as np

from jaxinv import data, distill, figures, report, zskd
from jaxinv import workdir as workdir_lib


def balanced_subset(classes: np.ndarray, size: int, num_classes: int) -> np.ndarray:
    """Indices of the first `size / num_classes` examples of every class."""
    per_class = size // num_classes
    picks = [np.flatnonzero(classes == k)[:per_class] for k in range(num_classes)]
    if any(len(p) < per_class for p in picks):
        raise ValueError(f"Not enough examples for {per_class} per class; synthesise more.")
    return np.concatenate(picks)


def transfer_size_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs the study; writes results.json and figures/fig3_*.png, figures/fig4_*.png."""
    test = data.load_dataset(config.dataset, "test", image_size=config.image_size)
    train_set = data.load_dataset(config.dataset, "train", image_size=config.image_size)
    sizes = [int(p * len(train_set.images) / 100) for p in config.percentages]
    if min(sizes) < config.distill.batch_size:
        raise ValueError(f"The smallest transfer set ({min(sizes)} images) is smaller than "
                         f"distill.batch_size={config.distill.batch_size}; raise the smallest "
                         "percentage or lower the batch size.")
    workdir_lib.open_workdir(workdir, config)
    teacher, _ = zskd.obtain_teacher(config, workdir)
    num_classes = teacher.num_classes
    transfer_sets = {}
    for kind in ("dirichlet", "one_hot"):
        synthesis = copy.deepcopy(config.synthesis)
        synthesis.kind = kind
        synthesis.num_per_class = -(-max(sizes) // num_classes)
        transfer_sets[kind] = zskd.synthesize_impressions(
            teacher, synthesis, os.path.join(workdir, f"synthesis_{kind}"))
    real_order = np.random.default_rng(config.distill.seed).permutation(len(train_set.images))
    curves = {"Data Impressions": [], "Class Impressions": [], "real training data": []}
    for percent, size in zip(config.percentages, sizes, strict=True):
        for label, kind in (("Data Impressions", "dirichlet"), ("Class Impressions", "one_hot")):
            subset = transfer_sets[kind].subset(
                balanced_subset(transfer_sets[kind].classes, size, num_classes))
            curves[label].append(distill.distill_and_evaluate(
                config.student, teacher, subset.images, test, config=config.distill,
                workdir=os.path.join(workdir, f"{kind}_{percent}"),
                teacher_logits=subset.logits)["test_accuracy"])
        curves["real training data"].append(distill.distill_and_evaluate(
            config.student, teacher, train_set.images[real_order[:size]], test,
            config=config.distill, workdir=os.path.join(workdir, f"real_{percent}"))[
                "test_accuracy"])
    percentages = list(config.percentages)
    figures_dir = os.path.join(workdir, "figures")
    figures.accuracy_curves(
        percentages, {k: curves[k] for k in ("Data Impressions", "real training data")},
        os.path.join(figures_dir, f"fig3_{config.dataset}.png"),
        xlabel="transfer set size (% of training set)", title=f"{config.dataset}: DIs vs data")
    figures.accuracy_curves(
        percentages, {k: curves[k] for k in ("Data Impressions", "Class Impressions")},
        os.path.join(figures_dir, f"fig4_{config.dataset}.png"),
        xlabel="transfer set size (% of training set)", title=f"{config.dataset}: DIs vs CIs")
    results = {"dataset": config.dataset, "percentages": percentages, "sizes": sizes,
               "accuracy": curves,
               "di_ahead_of_ci_at_every_size": bool(np.all(
                   np.asarray(curves["Data Impressions"])
                   > np.asarray(curves["Class Impressions"])))}
    report.write_json(os.path.join(workdir, "results.json"), results)
    return results
