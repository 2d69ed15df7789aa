"""How far can one universal perturbation fool the MNIST LeNet-5 at each ε, with real data?

A reference for Table 10: one perturbation δ optimised directly, with full access to real
training images, by signed gradient ascent on the teacher's cross-entropy of its own clean
predictions (300 steps of ε/20 on random batches of 256 from 5,000 training images, projected
on the l∞ ε-ball), then scored on the MNIST test set. No generator and no data-free source
does better in principle, so its fooling rate bounds what uap.py's generators can reach.

    python benchmarks/uap_ceiling.py [--write]

``--write`` replaces the ``uap_ceiling`` section of BENCHMARKS.md.
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

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.bench_synthesis import command_line, cpu_model
from jaxinv import data, experiment_configs, pipeline, report
from jaxinv.tasks import uap

SECTION = "uap_ceiling"
EPS_VALUES = (10, 16, 32, 64)
STEPS, BATCH, TRAIN_IMAGES = 300, 256, 5000


def optimised_perturbation(teacher, images: jax.Array, eps: float) -> np.ndarray:
    """One δ (1, H, W, C) in the ε-ball that maximises the CE of the clean predictions."""
    clean = teacher.logits(images).argmax(-1)

    @jax.jit
    def ascend(delta, batch, labels):
        def loss(delta):
            logits = teacher.logits(jnp.clip(batch + delta, 0.0, 1.0))
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        return jnp.clip(delta + eps / 20 * jnp.sign(jax.grad(loss)(delta)), -eps, eps)

    delta = jnp.zeros((1, *images.shape[1:]))
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        picks = rng.integers(0, len(images), BATCH)
        delta = ascend(delta, images[picks], clean[picks])
    return np.asarray(delta)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    config = experiment_configs.load_config("uap.py:mnist")
    teacher, _ = pipeline.obtain_teacher(config)
    train_images = jnp.asarray(data.load_dataset("mnist", "train", image_size=32,
                                                 limit=TRAIN_IMAGES).images)
    test = data.load_dataset("mnist", "test", image_size=32)
    rows = []
    for eps in EPS_VALUES:
        delta = optimised_perturbation(teacher, train_images, eps / 255)
        scored = uap.fooling_rate(teacher, delta, test.images, test.labels, 500)
        rows.append((f"{eps}/255", f"{scored['fooling_rate']:.2f}", f"{scored['accuracy']:.2f}"))
    body = "\n".join([
        "## Table 10 reference: one UAP optimised on real MNIST images",
        "",
        f"Date: {datetime.date.today().isoformat()}, {cpu_model()}. Command: "
        f"`{command_line('benchmarks/uap_ceiling.py', argv)}`. One perturbation per ε, "
        f"{STEPS} signed-gradient steps of ε/20 on the teacher's cross-entropy of its clean "
        f"predictions, batches of {BATCH} from the first {TRAIN_IMAGES} training images; scored "
        "on all 10,000 test images. The teacher is uap.py:mnist's.",
        "",
        report.markdown_table(["ε", "test fooling rate %", "accuracy under it %"], rows),
    ])
    report.publish_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), SECTION, body, args.write)


if __name__ == "__main__":
    main()
