"""The l2 radius of Data from Model's extraction, chosen on a validation split (dfm.py).

The paper states neither ε nor the number of PGD steps. This script extracts sets of
`--num_images` images from dfm.py:mnist's origin LeNet-5 (Fashion-MNIST backgrounds, 50 steps
of 2.5 ε / 50) at each candidate ε, trains M1 on each by the logit distance (dfm.py's DtM
settings, scaled to the set size), three seeds each, and scores the models on the last 5,000
MNIST training images, which the origin saw but no M1 does; the test set is not used.

    python benchmarks/dfm_epsilon.py [--write]

``--write`` replaces the ``dfm_epsilon`` section of BENCHMARKS.md.
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
from jaxinv import data, experiment_configs, pipeline, report, synthesis, train
from jaxinv.tasks import distill

SECTION = "dfm_epsilon"
VALIDATION = 5000
SEEDS = (0, 1, 2)
SCALE = 32 / 28  # radii of 28x28 images, on the 32x32 inputs
CANDIDATES = (1.0, 2.0, 3.0, 4.0)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_images", type=int, default=10000)
    parser.add_argument("--workdir", default=os.path.join(REPO_ROOT, "runs", SECTION))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    config = experiment_configs.load_config("dfm.py:mnist")
    teacher, _ = pipeline.obtain_teacher(config)
    train_set = data.load_dataset("mnist", "train", image_size=config.image_size)
    images, labels = train_set.images[-VALIDATION:], train_set.labels[-VALIDATION:]
    epochs = config.distill.num_steps * config.distill.batch_size // config.synthesis.num_examples
    rows = []
    for eps in CANDIDATES:
        block = config.synthesis.copy_and_resolve_references()
        block.update(dict(num_examples=args.num_images, epsilon=eps * SCALE,
                          chunk_size=min(block.chunk_size, args.num_images)))
        where = os.path.join(args.workdir, f"eps{eps:g}")
        samples = synthesis.synthesize_from_config(teacher, block, os.path.join(where, "set"))
        accuracies = []
        for seed in SEEDS:
            fit = config.distill.copy_and_resolve_references()
            fit.update(dict(seed=seed, num_steps=epochs * args.num_images // fit.batch_size))
            model, variables = distill.distill(
                fit.student, teacher, samples.images, config=fit,
                workdir=os.path.join(where, f"seed{seed}"), teacher_logits=samples.logits)
            accuracies.append(train.evaluate(model, variables, images, labels)["accuracy"])
        spread = distill.seed_spread(SEEDS, accuracies)
        rows.append((f"{eps:g} (× 32/28 = {eps * SCALE:.2f})",
                     f"{spread['mean']:.2f} ± {spread['sd']:.2f}",
                     ", ".join(f"{a:.2f}" for a in accuracies)))
        print(rows[-1], flush=True)
    body = "\n".join([
        "## Data from Model's extraction radius, chosen on a validation split (MNIST)",
        "",
        f"Date: {datetime.date.today().isoformat()}, {cpu_model()}. Command: "
        f"`{command_line('benchmarks/dfm_epsilon.py', argv)}`. {args.num_images} images "
        f"extracted from dfm.py:mnist's origin LeNet-5 at each ε "
        f"({config.synthesis.num_steps} l2-PGD steps of 2.5 ε / steps, Fashion-MNIST "
        f"backgrounds); M1 trained by the logit distance for {epochs} epochs, seeds "
        f"{list(SEEDS)}; accuracy on the last {VALIDATION} MNIST training images (not the "
        "test set).",
        "",
        report.markdown_table(["ε (28x28 scale)", "validation accuracy % (mean ± sd)",
                               "per seed"], rows),
    ])
    report.publish_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), SECTION, body, args.write)


if __name__ == "__main__":
    main()
