"""Ablation: distillation settings on the recorded 24,000 MNIST Data Impressions.

  python benchmarks/distill_ablation.py --write

Run `python benchmarks/record.py zskd_mnist` first: it leaves the DIs in
runs/zskd_mnist/synthesis/. Each row distils a fresh LeNet-5-half on those DIs with the
`zskd.py:mnist` distillation config, changing only the Adam learning rate, the number of steps
and the augmentation strength (a multiple of the config's scale, translation and rotation),
then scores it on the real MNIST test set. Each row takes 2-3 minutes on 2 cores and resumes
from runs/distill_ablation/.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from jaxinv import config_files, data, distill, report  # noqa: E402
from jaxinv.synthesis.transfer_set import TransferSet  # noqa: E402
from jaxinv.teacher import load_teacher  # noqa: E402

TRANSFER_SET = "runs/zskd_mnist/synthesis/transfer_set.npz"
TEACHER = "runs/teacher_mnist_plain"
# (learning rate, steps, augmentation multiple)
ROWS = [(2e-3, 5000, 1.0), (1e-2, 5000, 0.0), (1e-2, 5000, 1.0), (1e-2, 5000, 2.0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    path = os.path.join(REPO, TRANSFER_SET)
    if not os.path.exists(path):
        raise SystemExit(f"{TRANSFER_SET} is missing; run `python benchmarks/record.py "
                         "zskd_mnist` first.")
    transfer_set = TransferSet.load(path)
    teacher = load_teacher(os.path.join(REPO, TEACHER))
    test = data.load_dataset("mnist", "test")
    config = config_files.load_config(os.path.join(REPO, "experiments/configs/zskd.py:mnist"))
    rows = []
    for learning_rate, num_steps, strength in ROWS:
        distill_config = config.distill.copy_and_resolve_references()
        distill_config.optimizer.learning_rate = learning_rate
        distill_config.num_steps = num_steps
        for key in ("scale", "translate", "rotate_degrees"):
            distill_config.augment[key] = strength * config.distill.augment[key]
        name = f"lr{learning_rate:g}_steps{num_steps}_aug{strength:g}"
        result = distill.distill_and_evaluate(
            config.student, teacher, transfer_set.images, test, config=distill_config,
            workdir=os.path.join(REPO, "runs", "distill_ablation", name),
            teacher_logits=transfer_set.logits)
        rows.append((f"{learning_rate:g}", num_steps, f"{strength:g}x",
                     f"{result['test_accuracy']:.2f}", f"{result['seconds'] / 60:.1f}"))
        print(rows[-1], flush=True)
    body = "\n".join([
        "## Ablation: distillation settings on the MNIST Data Impressions", "",
        f"Recorded {datetime.date.today().isoformat()}. Command: "
        "`python benchmarks/distill_ablation.py --write`. The 24,000 DIs of "
        f"`{TRANSFER_SET}`, LeNet-5-half, batch 128, cosine decay, τ = 20; augmentation 1x is "
        "the config's (scale 0.1, translation 0.08, rotation 10°).", "",
        report.markdown_table(["Adam learning rate", "steps", "augmentation",
                               "student test (%)", "minutes"], rows)])
    print(body)
    if args.write:
        report.update_markdown_section(os.path.join(REPO, "BENCHMARKS.md"),
                                       "distill_ablation", body)


if __name__ == "__main__":
    main()
