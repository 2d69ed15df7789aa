"""Ablation: what makes Data Impressions transfer? Teacher augmentation and image priors.

  python benchmarks/impressions_ablation.py --write

For each row, 2,000 DIs (200 per class, 200 Adam steps, otherwise `zskd.py:<dataset>`) are
synthesised from a LeNet-5 teacher, LeNet-5-half is distilled on them for 1,000 steps without
augmentation, and the student is scored on the real test set. Rows vary the teacher
(runs/teacher_mnist: trained with augmentation; runs/teacher_mnist_plain: without;
runs/teacher_fashion_mnist; train them first with `jaxinv train
experiments/configs/teacher.py:<name>`), the squared-L2 pixel prior λ (`synthesis.pixel_l2`),
the squared total-variation prior μ (`synthesis.tv_l2`) and the synthesis temperature τ
(`synthesis.temperature`); λ = μ = 0 and τ = 20 is the paper's objective. Each row takes
about a minute on 2 cores and resumes from runs/ablation_*.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

import ml_collections
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from jaxinv import config_files, data, distill, losses, report, zskd  # noqa: E402
from jaxinv.teacher import load_teacher  # noqa: E402

TEACHERS = {"runs/teacher_mnist": ("mnist", "MNIST, augmented (teacher.py:mnist)"),
            "runs/teacher_mnist_plain": ("mnist", "MNIST, no augmentation (mnist_plain)"),
            "runs/teacher_fashion_mnist": ("fashion_mnist", "Fashion-MNIST (fashion_mnist)")}
PAPER_TEMPERATURE = 20.0
# (teacher workdir, λ, μ, τ): both MNIST teachers with and without the pixel prior, a λ sweep,
# Fashion-MNIST, whose images are brighter, the smoothness prior on top of the chosen λ, and
# the synthesis temperature around the paper's 20 at the chosen λ.
ROWS = [("runs/teacher_mnist", 0.0, 0.0, 20.0), ("runs/teacher_mnist", 1e-3, 0.0, 20.0),
        ("runs/teacher_mnist_plain", 0.0, 0.0, 20.0),
        ("runs/teacher_mnist_plain", 3e-4, 0.0, 20.0),
        ("runs/teacher_mnist_plain", 1e-3, 0.0, 20.0),
        ("runs/teacher_mnist_plain", 3e-3, 0.0, 20.0),
        ("runs/teacher_mnist_plain", 1e-2, 0.0, 20.0),
        ("runs/teacher_mnist_plain", 1e-3, 1e-2, 20.0),
        ("runs/teacher_mnist_plain", 1e-3, 0.0, 5.0),
        ("runs/teacher_mnist_plain", 1e-3, 0.0, 50.0),
        ("runs/teacher_fashion_mnist", 0.0, 0.0, 20.0),
        ("runs/teacher_fashion_mnist", 3e-4, 0.0, 20.0),
        ("runs/teacher_fashion_mnist", 1e-3, 0.0, 20.0),
        ("runs/teacher_fashion_mnist", 3e-4, 1e-3, 20.0),
        ("runs/teacher_fashion_mnist", 3e-4, 1e-2, 20.0),
        ("runs/teacher_fashion_mnist", 3e-4, 0.0, 5.0),
        ("runs/teacher_fashion_mnist", 3e-4, 0.0, 50.0),
        ("runs/teacher_fashion_mnist", 3e-4, 0.0, 100.0)]


def ablation_configs(dataset: str, pixel_l2: float, tv_l2: float, temperature: float
                     ) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
    """(synthesis, distill) configs: `zskd.py:<dataset>` scaled down to 2,000 DIs."""
    config = config_files.load_config(
        os.path.join(REPO, f"experiments/configs/zskd.py:{dataset}"))
    synthesis = config.synthesis
    synthesis.num_per_class, synthesis.chunk_size, synthesis.steps_per_call = 200, 2000, 100
    synthesis.pixel_l2, synthesis.tv_l2 = pixel_l2, tv_l2
    # The ablation studies the priors on the paper's pixel-wise starting noise.
    synthesis.init_resolution = None
    synthesis.temperature = temperature
    distill_config = config.distill
    distill_config.num_steps, distill_config.log_every = 1000, 100
    distill_config.optimizer.learning_rate = 1e-2
    distill_config.augment = ml_collections.ConfigDict(dict(
        scale=0.0, translate=0.0, rotate_degrees=0.0, hflip=False))
    return synthesis, distill_config


def ablation_row(teacher_dir: str, pixel_l2: float, tv_l2: float, temperature: float,
                 test: data.Dataset) -> dict:
    """Teacher and student test accuracy (%) and DI statistics for one (teacher, λ, μ, τ)."""
    synthesis, distill_config = ablation_configs(test.name, pixel_l2, tv_l2, temperature)
    teacher = load_teacher(os.path.join(REPO, teacher_dir))
    # Settings at the paper's values leave the name alone, so earlier rows still resume.
    name = f"ablation_{os.path.basename(teacher_dir)}_l2_{pixel_l2:g}" + (
        f"_tv_{tv_l2:g}" if tv_l2 else "") + (
        f"_tau_{temperature:g}" if temperature != PAPER_TEMPERATURE else "")
    workdir = os.path.join(REPO, "runs", name)
    transfer_set = zskd.synthesize_impressions(teacher, synthesis,
                                               os.path.join(workdir, "synthesis"))
    student = distill.distill_and_evaluate(
        "lenet5_half", teacher, transfer_set.images, test, config=distill_config,
        workdir=os.path.join(workdir, "student"), teacher_logits=transfer_set.logits)
    teacher_results = report.read_json(os.path.join(REPO, teacher_dir, "results.json"))
    return {"teacher": teacher_results["test_accuracy"], "student": student["test_accuracy"],
            "mean_pixel": float(np.mean(transfer_set.images)),
            "total_variation": float(np.mean(losses.total_variation_l2(transfer_set.images))),
            "agreement": 100 * float(np.mean(transfer_set.logits.argmax(-1)
                                             == transfer_set.targets.argmax(-1)))}


def real_image_statistics(dataset: str) -> str:
    """'<name> <mean pixel> / <mean TV²>' of a real training set, for comparison with DIs."""
    images = data.load_dataset(dataset, "train").images
    total_variation = np.mean(losses.total_variation_l2(images[:10000]))
    return f"{dataset} {np.mean(images):.3f} / {total_variation:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    datasets = sorted({dataset for dataset, _ in TEACHERS.values()})
    tests = {name: data.load_dataset(name, "test") for name in datasets}
    means = ", ".join(real_image_statistics(name) for name in datasets)
    rows = []
    for teacher_dir, pixel_l2, tv_l2, temperature in ROWS:
        dataset, label = TEACHERS[teacher_dir]
        result = ablation_row(teacher_dir, pixel_l2, tv_l2, temperature, tests[dataset])
        rows.append((label, f"{result['teacher']:.2f}",
                     f"{pixel_l2:g}" + (" (paper)" if pixel_l2 == 0 else ""),
                     f"{tv_l2:g}" + (" (paper)" if tv_l2 == 0 else ""),
                     f"{temperature:g}" + (" (paper)" if temperature == PAPER_TEMPERATURE
                                           else ""),
                     f"{result['mean_pixel']:.3f}", f"{result['total_variation']:.1f}",
                     f"{result['agreement']:.1f}",
                     f"{result['student']:.2f}"))
        print(rows[-1], flush=True)
    body = "\n".join([
        "## Ablation: teacher augmentation, image priors and temperature of Data Impressions",
        "",
        f"Recorded {datetime.date.today().isoformat()}. Command: "
        "`python benchmarks/impressions_ablation.py --write`. 2,000 DIs (200 steps), "
        "LeNet-5-half distilled 1,000 steps without augmentation, real test sets. "
        "λ is `synthesis.pixel_l2`, the weight of λ‖x‖² added to eq. 2, and μ is "
        "`synthesis.tv_l2`, the weight of the squared total variation TV²(x) "
        "(`losses.total_variation_l2`); τ is the temperature of eq. 2 (`synthesis.temperature`). "
        f"Mean pixel and mean TV² of the real training images: "
        f"{means}.", "",
        report.markdown_table(["teacher", "teacher test (%)", "pixel prior λ", "TV² prior μ",
                               "synthesis τ",
                               "mean DI pixel", "mean DI TV²", "teacher agrees with target (%)",
                               "student on 2,000 DIs (%)"], rows)])
    report.publish_section(os.path.join(REPO, "BENCHMARKS.md"), "impressions_ablation", body,
                           args.write)


if __name__ == "__main__":
    main()
