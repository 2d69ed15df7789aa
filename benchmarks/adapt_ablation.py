"""ADDA on DIs: adaptation length and discriminator input, scored on a validation split.

Table 7's real-source and DI rows fall short of the paper with adapt.py's CPU-sized 2,000
adaptation steps (ADDA's code runs 10,000). This script takes the source model, the DIs and the
target images of each recorded `adapt.py:<direction>` seed (runs/adapt_<direction>_seed<s>, made
by `benchmarks/record.py table7_<direction>`), adapts on the DIs again with longer training or
with the discriminator on the encoder's 500-d features, and scores every variant, the recorded
one included, on 2,000 target training images that adaptation never sees (labels read only
here); the test set is not used.

    python benchmarks/adapt_ablation.py [--direction usps_mnist] [--seeds 0,1,2] [--write]

``--write`` replaces the ``adapt_ablation`` section of BENCHMARKS.md.
"""

# ruff: noqa: E402  (the path set-up below has to run before the jaxinv imports)

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import argparse
import dataclasses
import datetime

import ml_collections
import numpy as np

from benchmarks.bench_synthesis import command_line, cpu_model
from jaxinv import data, report, saved_model, train
from jaxinv.synthesis import TRANSFER_SET_FILE
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.tasks import adapt
from jaxinv.teacher import load_teacher

SECTION = "adapt_ablation"
VALIDATION = 2000
# name -> (discriminator input, adaptation steps); "recorded" is the config's own run.
VARIANTS = {"recorded": None, "logits, 3x longer": ("logits", 6000),
            "features": ("features", 2000)}


def validation_split(config: ml_collections.ConfigDict) -> data.Dataset:
    """`VALIDATION` target training images outside the sample that adaptation reads."""
    block = config.adapt
    target = data.load_dataset(block.target, "train", image_size=config.image_size)
    adapted_on = np.zeros(len(target.labels), bool)
    if block.target_sample:
        adapted_on[data.subsample_indices(len(target.labels), block.target_sample,
                                          block.seed)] = True
    unseen = np.flatnonzero(~adapted_on)
    picks = np.sort(np.random.default_rng(block.seed + 100).choice(unseen, VALIDATION,
                                                                   replace=False))
    return dataclasses.replace(target, images=target.images[picks], labels=target.labels[picks])


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--direction", default="usps_mnist")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workdir", default=os.path.join(REPO_ROOT, "runs", SECTION))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    per_variant = {name: [] for name in VARIANTS}
    for seed in (int(s) for s in args.seeds.split(",")):
        run_dir = os.path.join(REPO_ROOT, "runs", f"adapt_{args.direction}_seed{seed}")
        config = ml_collections.ConfigDict(report.read_json(os.path.join(run_dir,
                                                                         "config.json")))
        teacher = load_teacher(report.read_json(os.path.join(run_dir, "results.json"))["teacher"])
        impressions = TransferSet.load(os.path.join(run_dir, "synthesis", TRANSFER_SET_FILE))
        validation = validation_split(config)
        target_images = adapt._target_train_images(config)
        for name, variant in VARIANTS.items():
            if variant is None:
                variables = saved_model.load_model(os.path.join(run_dir, "adapt",
                                                                "data_impressions"))[1]
            else:
                block = config.adapt.copy_and_resolve_references()
                block.discriminator_input, block.num_steps = variant
                variables = adapt.adapt(
                    teacher.model, teacher.variables, impressions.images, target_images,
                    config=block, workdir=os.path.join(args.workdir, f"{args.direction}_seed"
                                                       f"{seed}", name.replace(" ", "_")))
            per_variant[name].append(train.evaluate(teacher.model, variables, validation.images,
                                                    validation.labels)["accuracy"])
    rows = [(name, " ".join(f"{a:.2f}" for a in accuracies),
             f"{np.mean(accuracies):.2f} ± {np.std(accuracies, ddof=1):.2f}")
            for name, accuracies in per_variant.items()]
    body = "\n".join([
        f"## ADDA on DIs ({args.direction}): adaptation length and discriminator input, on a "
        "validation split",
        "",
        f"Date: {datetime.date.today().isoformat()}, {cpu_model()}. Command: "
        f"`{command_line('benchmarks/adapt_ablation.py', argv)}`. Each seed's source model, "
        f"DIs and target images are those of the recorded Table 7 run; accuracy on "
        f"{VALIDATION} target training images that adaptation never reads (not the test set). "
        "`recorded`: adapt.py's setting (discriminator on the logits, 2,000 steps).",
        "",
        report.markdown_table(["variant", "per seed %", "mean ± sd %"], rows),
    ])
    report.publish_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), SECTION, body, args.write)


if __name__ == "__main__":
    main()
