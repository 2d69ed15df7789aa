"""Attack speed: PGD-20 evaluation and PGD adversarial training, jaxinv against PyTorch.

Two measurements on MNIST-shaped LeNet-5 (32x32x1), side by side in one process, best of
``--repeats``, compilation and warm-up excluded:

- PGD-20 evaluation (l∞ ε = 0.3, step 2.5ε/20, random start): jaxinv's
  `tasks.robustness.attacked_predictions` (one compiled call per batch) against
  torchattacks' `PGD` followed by the model's predictions, on the real MNIST test images,
  batch ``--eval_batch_size``; images per second.
- PGD adversarial training (PGD-10 of 2.5ε/10, Adam, batch 128): jaxinv's
  `train.supervised_step` with an `adversarial_training.AdversarialTraining` (attack and update
  in one jitted, donated step) against the plain PyTorch loop (torchattacks' PGD on the batch
  in eval mode, then zero_grad, forward, cross-entropy, backward, Adam step); images per second
  and the implied seconds per 60,000-image epoch.

PyTorch runs eagerly with all threads. Needs the bench extra (torch, torchattacks). Run from the
repository root, on a quiet machine::

    python benchmarks/bench_attacks.py --eval_images 2000 --train_steps 60 --repeats 3 [--write]

``--write`` replaces the ``attack_speed`` section of BENCHMARKS.md.
"""

# ruff: noqa: E402  (the path set-up below has to run before the jaxinv imports)

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import argparse
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.bench_synthesis import (
    command_line,
    import_torch,
    import_torch_reference,
    machine_info,
    section_header,
    timed,
)
from jaxinv import adversarial_training, attacks, data, models, parallel, report, train
from jaxinv.tasks import robustness

SECTION = "attack_speed"
EPS = 0.3
TRAIN_BATCH = 128
EPOCH_IMAGES = 60000


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval_images", type=int, default=2000)
    parser.add_argument("--eval_batch_size", type=int, default=500)
    parser.add_argument("--train_steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true",
                        help="replace the attack_speed section of BENCHMARKS.md")
    return parser.parse_args(argv)


def jax_evaluation(model, variables, images, labels, batch_size: int):
    config = attacks.attack_config("pgd", EPS, num_steps=20)
    return lambda: robustness.attacked_predictions(model, variables, images, labels, config,
                                                   batch_size=batch_size)


def torch_evaluation(net, images, labels, batch_size: int):
    torch = import_torch()
    import torchattacks

    attack = torchattacks.PGD(net, eps=EPS, alpha=2.5 * EPS / 20, steps=20, random_start=True)
    x_all = torch.from_numpy(np.ascontiguousarray(np.transpose(images, (0, 3, 1, 2))))
    y_all = torch.from_numpy(labels.astype(np.int64))

    def run():
        for start in range(0, len(x_all), batch_size):
            adversarial = attack(x_all[start:start + batch_size], y_all[start:start + batch_size])
            with torch.no_grad():
                net(adversarial).argmax(-1)

    return run


def jax_training(images, labels, num_steps: int):
    """A closure running `num_steps` adversarial training steps from a fresh state."""
    model = models.get_model("lenet5", num_classes=10)
    tx = optax.adam(1e-3)
    adversarial = adversarial_training.AdversarialTraining(
        attacks.attack_config("pgd", EPS, purpose="train"))
    step_fn = train.supervised_step(model, tx, adversarial=adversarial)

    def train_step(state, batch):
        models_state, measurements = step_fn(state["models"], batch,
                                             jax.random.fold_in(jax.random.key(1), state["step"]),
                                             None, state["step"])
        return {"models": models_state, "step": state["step"] + 1}, measurements

    train_step = jax.jit(train_step, donate_argnums=0)
    batches = [{"images": images[i * TRAIN_BATCH:(i + 1) * TRAIN_BATCH],
                "labels": labels[i * TRAIN_BATCH:(i + 1) * TRAIN_BATCH]} for i in range(4)]

    def run():
        state = {"models": {"model": train.init_model_state(model, tx, jax.random.key(0),
                                                            (32, 32, 1))},
                 "step": jnp.zeros((), jnp.int32)}
        for step in range(num_steps):
            state, measurements = train_step(state, parallel.shard_batch(batches[step % 4]))
        jax.block_until_ready(measurements)

    return run


def torch_training(images, labels, num_steps: int):
    torch = import_torch()
    import torchattacks

    reference = import_torch_reference()
    x_all = torch.from_numpy(np.ascontiguousarray(np.transpose(images[:4 * TRAIN_BATCH],
                                                               (0, 3, 1, 2))))
    y_all = torch.from_numpy(labels[:4 * TRAIN_BATCH].astype(np.int64))

    def run():
        torch.manual_seed(0)
        net = reference.lenet5(10)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        attack = torchattacks.PGD(net, eps=EPS, alpha=2.5 * EPS / 10, steps=10,
                                  random_start=True)
        for step in range(num_steps):
            batch = slice((step % 4) * TRAIN_BATCH, (step % 4 + 1) * TRAIN_BATCH)
            net.eval()
            adversarial = attack(x_all[batch], y_all[batch])
            net.train()
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(adversarial), y_all[batch]).backward()
            optimizer.step()

    return run


def best_seconds(runs: dict, repeats: int) -> dict[str, float]:
    for run in runs.values():
        run()  # compilation and warm-up
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            best[name] = min(best[name], timed(run))
    return best


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    info = machine_info()
    torch = import_torch()
    reference = import_torch_reference()
    test = data.load_dataset("mnist", "test", image_size=32)
    images, labels = test.images[:args.eval_images], test.labels[:args.eval_images]
    model = models.get_model("lenet5", num_classes=10)
    variables = models.init_variables(model, jax.random.key(0), (32, 32, 1))
    net = reference.lenet5_from_jax(jax.tree.map(np.asarray, variables["params"]))
    train_set = data.load_dataset("mnist", "train", image_size=32, limit=4 * TRAIN_BATCH)
    seconds = best_seconds({
        "jaxinv evaluation": jax_evaluation(model, variables, images, labels,
                                            args.eval_batch_size),
        "PyTorch evaluation": torch_evaluation(net, images, labels, args.eval_batch_size),
        "jaxinv training": jax_training(train_set.images, train_set.labels, args.train_steps),
        "PyTorch training": torch_training(train_set.images, train_set.labels,
                                           args.train_steps),
    }, args.repeats)
    eval_rate = {k: len(images) / seconds[f"{k} evaluation"] for k in ("jaxinv", "PyTorch")}
    train_rate = {k: TRAIN_BATCH * args.train_steps / seconds[f"{k} training"]
                  for k in ("jaxinv", "PyTorch")}
    rows = [("PGD-20 evaluation (torchattacks PGD)", f"{eval_rate['jaxinv']:,.0f}",
             f"{eval_rate['PyTorch']:,.0f}", f"{eval_rate['jaxinv'] / eval_rate['PyTorch']:.2f}x",
             ""),
            ("PGD-10 adversarial training, batch 128", f"{train_rate['jaxinv']:,.0f}",
             f"{train_rate['PyTorch']:,.0f}",
             f"{train_rate['jaxinv'] / train_rate['PyTorch']:.2f}x",
             f"{EPOCH_IMAGES / train_rate['jaxinv']:.0f} / "
             f"{EPOCH_IMAGES / train_rate['PyTorch']:.0f}")]
    import torchattacks

    body = "\n".join([
        *section_header("## Attack speed: jaxinv vs. PyTorch (LeNet-5, MNIST, CPU)",
                        command_line("benchmarks/bench_attacks.py", argv), info),
        f"l∞ ε = {EPS}; torchattacks {torchattacks.__version__}, PyTorch eager with "
        f"{torch.get_num_threads()} threads. Evaluation: {len(images)} real MNIST test images "
        f"in batches of {args.eval_batch_size}, PGD-20 with random start, then predictions. "
        f"Training: {args.train_steps} steps of PGD-10 adversarial training from a fresh "
        f"LeNet-5 (Adam), batches of {TRAIN_BATCH} real MNIST images. Best of "
        f"{args.repeats}; compilation and warm-up excluded.",
        "",
        report.markdown_table(["measurement", "jaxinv images/s", "PyTorch images/s",
                               "jaxinv / PyTorch", "s per epoch, jaxinv / PyTorch"], rows),
    ])
    report.publish_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), SECTION, body, args.write)


if __name__ == "__main__":
    main()
