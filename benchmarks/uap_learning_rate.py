"""The UAP generator's learning rate, chosen on a validation split (uap.py's departure).

The paper trains its generator with Adam at lr 1e-5 for 20 epochs. With uap.py's fixed budget
this script trains one generator per learning rate on uap.py:mnist's Data Impressions (from
the same teacher and synthesis, made once under runs/) at ε = 32/255 and scores its fooling
rate on the last 5,000 MNIST training images, which no generator of uap.py trains on except
the real-data ceiling's; the test set is not used.

    python benchmarks/uap_learning_rate.py [--learning_rates 1e-5,1e-4,1e-3,1e-2] [--write]

``--write`` replaces the ``uap_learning_rate`` section of BENCHMARKS.md.
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
from jaxinv import data, experiment_configs, pipeline, report, synthesis
from jaxinv.tasks import uap

SECTION = "uap_learning_rate"
EPS = 32 / 255
VALIDATION = 5000


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learning_rates", default="1e-5,1e-4,1e-3,1e-2")
    parser.add_argument("--workdir", default=os.path.join(REPO_ROOT, "runs", SECTION))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    config = experiment_configs.load_config("uap.py:mnist")
    teacher, _ = pipeline.obtain_teacher(config)
    impressions = synthesis.synthesize_from_config(teacher, config.synthesis,
                                                   os.path.join(args.workdir, "synthesis"))
    train_set = data.load_dataset("mnist", "train", image_size=config.image_size)
    images, labels = train_set.images[-VALIDATION:], train_set.labels[-VALIDATION:]
    rows = []
    for learning_rate in (float(x) for x in args.learning_rates.split(",")):
        block = config.uap.copy_and_resolve_references()
        block.optimizer.learning_rate = learning_rate
        generator, variables = uap.train_generator(
            teacher, impressions.images, EPS, block, block.seed,
            os.path.join(args.workdir, f"lr{learning_rate:g}"))
        perturbations = uap.sample_perturbations(generator, variables, block.latent_dim,
                                                 block.num_eval_perturbations, block.seed + 1)
        rate = uap.fooling_rate(teacher, perturbations, images, labels, 500)["fooling_rate"]
        rows.append((f"{learning_rate:g}", f"{rate:.2f}"))
    floor = uap.fooling_rate(teacher, uap.uniform_perturbations(
        teacher.image_shape, EPS, config.uap.num_eval_perturbations, 1), images, labels,
        500)["fooling_rate"]
    body = "\n".join([
        "## UAP generator learning rate, chosen on a validation split (MNIST, ε = 32/255)",
        "",
        f"Date: {datetime.date.today().isoformat()}, {cpu_model()}. Command: "
        f"`{command_line('benchmarks/uap_learning_rate.py', argv)}`. One generator per "
        f"learning rate on uap.py:mnist's {len(impressions)} Data Impressions, "
        f"{config.uap.num_steps} Adam steps of batch {config.uap.batch_size}; fooling rate on "
        f"the last {VALIDATION} MNIST training images (not the test set), over "
        f"{config.uap.num_eval_perturbations} sampled perturbations. A uniform perturbation "
        f"in the same ball fools {floor:.2f} %.",
        "",
        report.markdown_table(["learning rate", "validation fooling rate %"], rows),
    ])
    report.publish_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), SECTION, body, args.write)


if __name__ == "__main__":
    main()
