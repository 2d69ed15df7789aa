"""Ablation: Data Impressions from a teacher trained with vs without augmentation.

  python benchmarks/teacher_augmentation.py --write

For each MNIST LeNet-5 teacher (runs/teacher_mnist: augmented, runs/teacher_mnist_plain: not;
train them first with `jaxinv train experiments/configs/teacher.py:<mnist|mnist_plain>`), it
synthesises 2,000 DIs (200 per class, 200 Adam steps) and distils LeNet-5-half on them for
1,000 steps without augmentation, then scores the student on the real MNIST test set.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

import ml_collections

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from jaxinv import config_files, data, distill, report, zskd  # noqa: E402
from jaxinv.teacher import load_teacher  # noqa: E402

TEACHERS = {"augmented (teacher.py:mnist)": "runs/teacher_mnist",
            "no augmentation (teacher.py:mnist_plain)": "runs/teacher_mnist_plain"}


def student_accuracy(teacher_dir: str, workdir: str) -> tuple[float, float]:
    """(teacher test %, student test %) for 2,000 DIs from the teacher at `teacher_dir`."""
    config = config_files.load_config(os.path.join(REPO, "experiments/configs/zskd.py:mnist"))
    synthesis = config.synthesis
    synthesis.num_per_class, synthesis.chunk_size, synthesis.steps_per_call = 200, 2000, 100
    distill_config = config.distill
    distill_config.num_steps, distill_config.log_every = 1000, 100
    distill_config.optimizer.learning_rate = 1e-2
    distill_config.augment = ml_collections.ConfigDict(dict(
        scale=0.0, translate=0.0, rotate_degrees=0.0, hflip=False))
    teacher = load_teacher(os.path.join(REPO, teacher_dir))
    test = data.load_dataset("mnist", "test")
    transfer_set = zskd.synthesize_impressions(teacher, synthesis,
                                               os.path.join(workdir, "synthesis"))
    student = distill.distill_and_evaluate(
        "lenet5_half", teacher, transfer_set.images, test, config=distill_config,
        workdir=os.path.join(workdir, "student"), teacher_logits=transfer_set.logits)
    teacher_accuracy = report.read_json(os.path.join(REPO, teacher_dir, "results.json"))
    return teacher_accuracy["test_accuracy"], student["test_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    rows = []
    for label, teacher_dir in TEACHERS.items():
        name = os.path.basename(teacher_dir)
        teacher_acc, student_acc = student_accuracy(
            teacher_dir, os.path.join(REPO, "runs", f"ablation_{name}"))
        rows.append((label, f"{teacher_acc:.2f}", f"{student_acc:.2f}"))
    body = "\n".join([
        "## Ablation: teacher augmentation and Data Impressions", "",
        f"Recorded {datetime.date.today().isoformat()}. Command: "
        "`python benchmarks/teacher_augmentation.py --write`. 2,000 DIs (200 steps), "
        "LeNet-5-half distilled 1,000 steps without augmentation, real MNIST test set.", "",
        report.markdown_table(["MNIST teacher", "teacher test (%)", "student on 2,000 DIs (%)"],
                              rows)])
    print(body)
    if args.write:
        report.update_markdown_section(os.path.join(REPO, "BENCHMARKS.md"),
                                       "teacher_augmentation", body)


if __name__ == "__main__":
    main()
