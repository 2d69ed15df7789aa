"""Supervised training speed: jaxinv's jitted train step against eager PyTorch, LeNet-5 on CPU.

Both sides train LeNet-5 on 32x32x1 random images with 10-class cross-entropy and Adam
(lr 1e-3). jaxinv runs its own training step, :func:`jaxinv.train.supervised_step`, wrapped and
jitted (donating the state) as :func:`jaxinv.train.fit` does, on a state from
:func:`jaxinv.train.init_model_state`, and places every batch with
:func:`jaxinv.parallel.shard_batch` as `fit`'s batch iterator does. PyTorch is
:func:`benchmarks.torch_reference.torch_train_throughput` (zero_grad, forward, backward, Adam
step, eager), with all its threads and with one (its multi-threaded speed collapses when other
processes load the CPU); the ratio is to the faster. Both run in the same process,
interleaved, best of ``--repeats``; jaxinv's compilation is excluded by a warm-up step.
torch is imported only when the PyTorch side runs, so ``--help`` works without it.

Run from the repository root, on a quiet machine (the load average is recorded)::

    python benchmarks/bench_train.py --batch_size 128 --num_steps 200 --repeats 3 [--write]

``--write`` replaces the ``train_speed`` section of BENCHMARKS.md.
"""

# ruff: noqa: E402  (the path set-up below has to run before the jaxinv imports)

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    # `python benchmarks/x.py` puts only benchmarks/ on the path, and jaxinv may not be
    # installed, so the repository root is added for `import jaxinv` and `benchmarks.*`.
    sys.path.insert(0, REPO_ROOT)

import argparse
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from benchmarks.bench_synthesis import (
    IMAGE_SHAPE,
    NUM_CLASSES,
    command_line,
    import_torch,
    import_torch_reference,
    machine_info,
    machine_markdown,
    section_header,
    timed,
    torch_columns,
    torch_label,
    torch_thread_counts,
)
from jaxinv import models, parallel, report, train

SECTION = "train_speed"
LEARNING_RATE = 1e-3
# Distinct host batches cycled through the timed steps, so that no step reuses a placed array.
NUM_HOST_BATCHES = 4


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults run in well under a minute on 2 cores."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--num_steps", type=int, default=200, help="timed steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch_threads", type=int, default=None,
                        help="torch.set_num_threads; default: torch's own (all cores)")
    parser.add_argument("--write", action="store_true",
                        help="replace the train_speed section of BENCHMARKS.md")
    args = parser.parse_args(argv)
    for name in ("batch_size", "num_steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    return args


def optimizer_config() -> ml_collections.ConfigDict:
    """Adam at a constant 1e-3, the PyTorch baseline's optimiser."""
    return ml_collections.ConfigDict(
        {"name": "adam", "learning_rate": LEARNING_RATE, "schedule": "constant"})


class JaxTrainer:
    """jaxinv's training step on LeNet-5 with fixed random host batches.

    The step is `train.supervised_step` inside the same wrapper `train.fit` jits: the run key
    folded with the step count, the step count advanced, the state donated. (`fit` itself is
    not timed: it compiles afresh on every call and checkpoints and logs as it goes.) The state
    is rebuilt for every run because the step donates it; building it is not timed.
    """

    def __init__(self, batch_size: int, seed: int):
        parallel.check_divisible(batch_size, "batch_size")
        self.model = models.get_model("lenet5", num_classes=NUM_CLASSES)
        self.tx = train.make_optimizer(optimizer_config(), num_steps=1)
        step_fn = train.supervised_step(self.model, self.tx)
        self.init_rng, run_rng = jax.random.split(jax.random.key(seed))

        def train_step(state: train.TrainState, batch: dict, context) -> tuple:
            new_models, measurements = step_fn(state.models, batch,
                                               jax.random.fold_in(run_rng, state.step), context)
            return train.TrainState(step=state.step + 1, models=new_models), measurements

        self.train_step = jax.jit(train_step, donate_argnums=0)
        self.init_state = jax.jit(
            lambda rng: train.TrainState(
                step=jnp.zeros((), jnp.int32),
                models={"model": train.init_model_state(self.model, self.tx, rng, IMAGE_SHAPE)}),
            out_shardings=parallel.replicated())
        rng = np.random.default_rng(seed)
        # Host arrays, as `data.iterate_batches` draws them for `fit`; each timed step places
        # its batch on the mesh, so the host-to-device step is part of the measurement.
        self.batches = [
            {"images": rng.uniform(size=(batch_size, *IMAGE_SHAPE)).astype(np.float32),
             "labels": rng.integers(0, NUM_CLASSES, size=batch_size).astype(np.int32)}
            for _ in range(NUM_HOST_BATCHES)]

    def fresh_state(self) -> train.TrainState:
        """A newly initialised, replicated train state, as `fit` starts from."""
        return self.init_state(self.init_rng)

    def run(self, num_steps: int) -> float:
        """Seconds for `num_steps` steps from a fresh state, waiting for the last one."""
        state = jax.block_until_ready(self.fresh_state())

        def steps() -> None:
            nonlocal state
            for step in range(num_steps):
                batch = parallel.shard_batch(self.batches[step % NUM_HOST_BATCHES])
                state, measurements = self.train_step(state, batch, None)
            # The steps are dispatched asynchronously; wait for the last one to finish.
            jax.block_until_ready((state, measurements))

        return timed(steps)


def torch_images_per_second(batch_size: int, num_steps: int, seed: int, threads: int) -> float:
    """PyTorch training throughput with `threads` threads for this call only."""
    torch, torch_reference = import_torch(), import_torch_reference()
    previous = torch.get_num_threads()
    try:
        return torch_reference.torch_train_throughput(batch_size, num_steps, seed=seed,
                                                      num_threads=threads)
    finally:
        torch.set_num_threads(previous)


def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    """Interleaved jaxinv and PyTorch runs (all threads and one thread); images/s of each."""
    trainer = JaxTrainer(args.batch_size, args.seed)
    trainer.run(2)  # compile, and warm the allocator as torch's warm-up steps do
    work = args.batch_size * args.num_steps
    thread_counts = torch_thread_counts(args.torch_threads)
    runs: dict[str, list[float]] = {"jaxinv": []}
    runs.update({torch_label(threads): [] for threads in thread_counts})
    for repeat in range(args.repeats):
        runs["jaxinv"].append(work / trainer.run(args.num_steps))
        for threads in thread_counts:
            runs[torch_label(threads)].append(torch_images_per_second(
                args.batch_size, args.num_steps, args.seed, threads))
        print(f"  repeat {repeat + 1}/{args.repeats}: " + ", ".join(
            f"{name} {values[-1]:,.0f}" for name, values in runs.items()) + " images/s",
            flush=True)
    return runs


def report_body(args: argparse.Namespace, command: str, info: dict[str, str],
                runs: dict[str, list[float]]) -> str:
    """The BENCHMARKS.md section: setup, machine and the result table."""
    best = {name: max(values) for name, values in runs.items()}
    columns = torch_columns(best)
    torch_best = max(best[key] for key, _ in columns)
    table = report.markdown_table(
        ["batch size", "steps", "jaxinv images/s",
         *(f"{label} images/s" for _, label in columns), "jaxinv / faster PyTorch"],
        [[args.batch_size, args.num_steps, f"{best['jaxinv']:,.0f}",
          *(f"{best[key]:,.0f}" for key, _ in columns), f"{best['jaxinv'] / torch_best:.2f}x"]])
    return "\n".join([
        *section_header(
            "## Supervised training speed: jaxinv vs. eager PyTorch (LeNet-5, CPU)", command,
            info),
        f"LeNet-5 on random 32x32x1 images, 10-class cross-entropy, Adam (lr {LEARNING_RATE:g}). "
        "jaxinv: `train.supervised_step` in `train.fit`'s step wrapper (jitted, donated state) "
        "with each batch placed by `parallel.shard_batch`; PyTorch: "
        "`torch_reference.torch_train_throughput` (eager, one fixed batch), with all threads "
        "and with one, since its multi-threaded speed collapses when other processes load the "
        "CPU; the ratio is to the faster of the two. Best of "
        f"{args.repeats} interleaved runs in one process; jaxinv compilation excluded.",
        "",
        table,
    ])


def main(argv: Sequence[str] | None = None) -> None:
    """Measures both frameworks, prints the section, and writes it with `--write`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.torch_threads is not None:
        import_torch().set_num_threads(args.torch_threads)
    info = machine_info()
    command = command_line("benchmarks/bench_train.py", argv)
    print(command, "\n" + machine_markdown(info), flush=True)
    runs = measure(args)
    body = report_body(args, command, info, runs)
    print("\n" + body)
    if args.write:
        report.update_markdown_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), SECTION, body)
        print(f"\nwrote section {SECTION!r} of BENCHMARKS.md")


if __name__ == "__main__":
    main()
