"""An independent check of jaxinv.attacks: torchattacks on the same MNIST teachers.

The LeNet-5 MNIST teachers of robustness.py (the non-robust one and the PGD-trained one,
taken from the teacher store, trained there if missing) are converted to PyTorch
(`torch_reference.lenet5_from_jax`, logits checked against jaxinv's) and attacked on the real
MNIST test set by torchattacks' FGSM and PGD (random start off) and by jaxinv's with the same
ε, steps and step size. The two accuracies under attack must agree within 0.5 points.
jaxinv keeps each example's best iterate and torchattacks its last, so jaxinv's accuracy can
only be lower or equal when the trajectories coincide.

Needs the bench extra (torch, torchattacks). Run from the repository root::

    python benchmarks/check_attacks.py [--limit N] [--write]

``--write`` replaces the ``attack_check`` section of BENCHMARKS.md. Exits 1 on a
disagreement.
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
from collections.abc import Sequence

import jax
import numpy as np

from benchmarks.bench_synthesis import command_line, import_torch, import_torch_reference
from jaxinv import attacks, data, experiment_configs, pipeline, report
from jaxinv.tasks import robustness

SECTION = "attack_check"
TOLERANCE = 0.5  # points of accuracy
EPS = 0.3
PGD_STEPS, PGD_STEP_SIZE = 40, 0.01
TEACHERS = {"non-robust teacher": "robustness.py:mnist",
            "PGD-trained teacher": "robustness.py:mnist_robust"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="first N test images only")
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--write", action="store_true",
                        help="replace the attack_check section of BENCHMARKS.md")
    return parser.parse_args(argv)


def torchattacks_accuracy(model, images: np.ndarray, labels: np.ndarray, attack_name: str,
                          batch_size: int) -> float:
    """Accuracy (%) of the torch `model` under torchattacks' FGSM or PGD (no random start)."""
    torch = import_torch()
    import torchattacks

    if attack_name == "fgsm":
        attack = torchattacks.FGSM(model, eps=EPS)
    else:
        attack = torchattacks.PGD(model, eps=EPS, alpha=PGD_STEP_SIZE, steps=PGD_STEPS,
                                  random_start=False)
    correct = 0
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(
            np.transpose(images[start:start + batch_size], (0, 3, 1, 2))))
        y = torch.from_numpy(labels[start:start + batch_size].astype(np.int64))
        adversarial = attack(x, y)
        with torch.no_grad():
            correct += int((model(adversarial).argmax(-1) == y).sum())
    return 100.0 * correct / len(images)


def jaxinv_config(attack_name: str) -> attacks.AttackConfig:
    if attack_name == "fgsm":
        return attacks.attack_config("fgsm", EPS)
    return attacks.attack_config("pgd", EPS, num_steps=PGD_STEPS, step_size=PGD_STEP_SIZE,
                                 random_start=False)


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    torch = import_torch()
    reference = import_torch_reference()
    test = data.load_dataset("mnist", "test", image_size=32)
    images, labels = test.images[:args.limit], test.labels[:args.limit]
    rows, worst = [], 0.0
    for label, spec in TEACHERS.items():
        teacher, _ = pipeline.obtain_teacher(experiment_configs.load_config(spec))
        params = jax.tree.map(np.asarray, teacher.variables["params"])
        model = reference.lenet5_from_jax(params)
        with torch.no_grad():
            torch_logits = model(torch.from_numpy(np.transpose(images[:256], (0, 3, 1, 2))))
        jax_logits = np.asarray(teacher.logits(images[:256]))
        np.testing.assert_allclose(torch_logits.numpy(), jax_logits, rtol=1e-4, atol=1e-4)
        for attack_name in ("fgsm", "pgd"):
            ours = 100.0 * np.mean(robustness.attacked_predictions(
                teacher.model, teacher.variables, images, labels, jaxinv_config(attack_name),
                batch_size=args.batch_size) == labels)
            theirs = torchattacks_accuracy(model, images, labels, attack_name, args.batch_size)
            worst = max(worst, abs(ours - theirs))
            rows.append((label, attack_name.upper(), f"{ours:.2f}", f"{theirs:.2f}",
                         f"{ours - theirs:+.2f}"))
    import torchattacks

    verdict = (f"agree within {TOLERANCE} points (largest difference {worst:.2f})"
               if worst <= TOLERANCE else
               f"DISAGREE: largest difference {worst:.2f} points > {TOLERANCE}")
    body = "\n".join([
        "## Attacks checked against torchattacks (MNIST teachers, l∞ ε = 0.3)",
        "",
        f"Date: {datetime.date.today().isoformat()}. Command: "
        f"`{command_line('benchmarks/check_attacks.py', argv)}`. torch {torch.__version__}, "
        f"torchattacks {torchattacks.__version__}, {len(images)} MNIST test images.",
        "",
        f"FGSM: one step of ε. PGD: {PGD_STEPS} steps of {PGD_STEP_SIZE}, no random start. The "
        "teachers' weights are converted to PyTorch and their logits checked to agree "
        "(1e-4). jaxinv keeps each example's best iterate, torchattacks its last.",
        "",
        report.markdown_table(["teacher", "attack", "jaxinv accuracy %",
                               "torchattacks accuracy %", "difference"], rows),
        "",
        f"jaxinv and torchattacks {verdict}.",
    ])
    report.publish_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), SECTION, body, args.write)
    if worst > TOLERANCE:
        sys.exit(1)


if __name__ == "__main__":
    main()
