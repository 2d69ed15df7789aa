"""The student optimiser of CAKE's distillation, chosen on a validation split (cake.py's
departure).

The authors distil with SGD at 0.5 (momentum 0.9, weight decay 5e-4, one-cycle). With
cake.py:mnist's sizes that student does not learn (BENCHMARKS.md). This script distils
LeNet-5-half on the same CAKE samples (cake.py:mnist's, made once under runs/cake_mnist) with
each candidate optimiser, at cake.py's other settings (T = 1, batch 256, 2,812 steps), three
seeds each, and scores the students on the last 5,000 MNIST training images, which the teacher
saw but no student does; the test set is not used.

    python benchmarks/cake_student_optimizer.py [--write]

``--write`` replaces the ``cake_student_optimizer`` section of BENCHMARKS.md.
"""

# ruff: noqa: E402  (the path set-up below has to run before the jaxinv imports)

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import argparse
import datetime

from benchmarks.bench_synthesis import command_line, cpu_model
from jaxinv import data, experiment_configs, pipeline, report, train
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.tasks import distill

SECTION = "cake_student_optimizer"
VALIDATION = 5000
SEEDS = (0, 1, 2)
# name -> the distill block's optimizer.
CANDIDATES = {
    "SGD 0.5, one-cycle (the authors')": dict(name="sgd", learning_rate=0.5,
                                              schedule="onecycle", weight_decay=5e-4),
    "SGD 0.05, one-cycle": dict(name="sgd", learning_rate=0.05, schedule="onecycle",
                                weight_decay=5e-4),
    "Adam 1e-3, cosine": dict(name="adam", learning_rate=1e-3, schedule="cosine",
                              weight_decay=0.0),
}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", default=os.path.join(REPO_ROOT, "runs", "cake_mnist",
                                                          "synthesis", "transfer_set.npz"))
    parser.add_argument("--workdir", default=os.path.join(REPO_ROOT, "runs", SECTION))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    config = experiment_configs.load_config("cake.py:mnist_authors_student")
    teacher, _ = pipeline.obtain_teacher(config)
    samples = TransferSet.load(args.samples)
    train_set = data.load_dataset("mnist", "train", image_size=config.image_size)
    images, labels = train_set.images[-VALIDATION:], train_set.labels[-VALIDATION:]
    rows = []
    for index, (label, optimizer) in enumerate(CANDIDATES.items()):
        accuracies = []
        for seed in SEEDS:
            block = config.distill.copy_and_resolve_references()
            block.optimizer.update(optimizer)
            block.seed = seed
            student, variables = distill.distill(
                block.student, teacher, samples.images, config=block,
                workdir=os.path.join(args.workdir, f"candidate{index}_seed{seed}"),
                teacher_logits=samples.logits)
            accuracies.append(train.evaluate(student, variables, images, labels)["accuracy"])
        spread = distill.seed_spread(SEEDS, accuracies)
        rows.append((label, f"{spread['mean']:.2f} ± {spread['sd']:.2f}",
                     ", ".join(f"{a:.2f}" for a in accuracies)))
        print(rows[-1], flush=True)
    body = "\n".join([
        "## CAKE's student optimiser, chosen on a validation split (MNIST)",
        "",
        f"Date: {datetime.date.today().isoformat()}, {cpu_model()}. Command: "
        f"`{command_line('benchmarks/cake_student_optimizer.py', argv)}`. LeNet-5-half "
        f"distilled on cake.py:mnist's {len(samples)} CAKE samples, {config.distill.num_steps} "
        f"steps of batch {config.distill.batch_size} at T = 1, seeds {list(SEEDS)}; accuracy "
        f"on the last {VALIDATION} MNIST training images (not the test set).",
        "",
        report.markdown_table(["optimiser", "validation accuracy % (mean ± sd)", "per seed"],
                              rows),
    ])
    report.publish_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), SECTION, body, args.write)


if __name__ == "__main__":
    main()
