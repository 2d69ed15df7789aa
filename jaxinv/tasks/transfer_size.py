"""Student accuracy against transfer-set size: against real data (Fig. 3) and a baseline (Fig. 4).

Nested, class-balanced subsets of the run's TransferSet are distilled, and so are subsets of
the same sizes of a baseline TransferSet (made by `transfer_size.baseline`, another synthesis
block: Class Impressions in Fig. 4) and of the real training images (seeded and shuffled).

Config (`transfer_size` block): `percentages` of the real training set's size, `baseline` (a
synthesis block) and `baseline_label`; distillation as the `distill` block.

References:
  Nayak et al., "Mining Data Impressions from Deep Models", TPAMI 2021, Figs. 3 and 4.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from jaxinv import data, figures, synthesis
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.tasks import distill
from jaxinv.teacher import Teacher


def balanced_subset(classes: np.ndarray, size: int, num_classes: int) -> np.ndarray:
    """Indices of the first `size / num_classes` examples of every class."""
    per_class = size // num_classes
    picks = [np.flatnonzero(classes == k)[:per_class] for k in range(num_classes)]
    if any(len(p) < per_class for p in picks):
        raise ValueError(f"Not enough examples for {per_class} per class; synthesise more.")
    return np.concatenate(picks)


def _classes(transfer_set: TransferSet) -> np.ndarray:
    return transfer_set.metadata.get("class", transfer_set.logits.argmax(-1))


def check_config(config: ml_collections.ConfigDict, num_examples: int | None = None) -> None:
    """Refuses percentages, a baseline or distillation settings that cannot run."""
    block = config.transfer_size
    if not block.percentages or any(not 0 < p <= 100 for p in block.percentages):
        raise ValueError(f"transfer_size.percentages must be in (0, 100], got "
                         f"{tuple(block.percentages)}.")
    synthesis.check_config(block.baseline,
                           data.image_shape(config.dataset, config.get("image_size")),
                           data.num_classes(config.dataset))
    distill.check_config(config, num_examples)


def run(config: ml_collections.ConfigDict, teacher: Teacher, transfer_set: TransferSet,
        workdir: str) -> dict:
    """Distils one student per size and source; writes figures/fig3.png and fig4.png."""
    block, distill_config = config.transfer_size, config.distill
    test = data.load_dataset(config.dataset, "test", image_size=config.get("image_size"))
    train_set = data.load_dataset(config.dataset, "train", image_size=config.get("image_size"))
    sizes = [int(p * len(train_set.images) / 100) for p in block.percentages]
    if min(sizes) < distill_config.batch_size:
        raise ValueError(f"The smallest transfer set ({min(sizes)} images) is smaller than "
                         f"distill.batch_size={distill_config.batch_size}; raise the smallest "
                         "percentage or lower the batch size.")
    baseline = synthesis.synthesize_from_config(teacher, block.baseline,
                                                os.path.join(workdir, "baseline_synthesis"))
    sources = {transfer_set.method: transfer_set, block.baseline_label: baseline}
    real_order = np.random.default_rng(distill_config.seed).permutation(len(train_set.images))
    curves = {label: [] for label in (*sources, "real training data")}
    for percent, size in zip(block.percentages, sizes, strict=True):
        for label, source in sources.items():
            subset = source.subset(balanced_subset(_classes(source), size, teacher.num_classes))
            curves[label].append(distill.distill_and_evaluate(
                distill_config.student, teacher, subset.images, test, config=distill_config,
                workdir=os.path.join(workdir, f"{label}_{percent}"),
                teacher_logits=subset.logits)["test_accuracy"])
        curves["real training data"].append(distill.distill_and_evaluate(
            distill_config.student, teacher, train_set.images[real_order[:size]], test,
            config=distill_config, workdir=os.path.join(workdir, f"real_{percent}"))[
                "test_accuracy"])
    percentages = list(block.percentages)
    figures_dir = os.path.join(workdir, "figures")
    for name, labels in (("fig3", (transfer_set.method, "real training data")),
                         ("fig4", (transfer_set.method, block.baseline_label))):
        figures.accuracy_curves(percentages, {k: curves[k] for k in labels},
                                os.path.join(figures_dir, f"{name}_{config.dataset}.png"),
                                xlabel="transfer set size (% of training set)",
                                title=f"{config.dataset}: {' vs '.join(labels)}")
    return {"percentages": percentages, "sizes": sizes, "accuracy": curves,
            "ahead_of_baseline_at_every_size": bool(np.all(
                np.asarray(curves[transfer_set.method])
                > np.asarray(curves[block.baseline_label])))}
