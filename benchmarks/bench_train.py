"""Training speed: jaxinv's jitted train step against PyTorch (eager and compiled), on CPU.

One command measures one configuration, chosen by ``--model``, ``--step`` and
``--batch_size``:

- ``--step supervised``: the model (``lenet5``: LeNet-5 on 32x32x1; ``resnet32``: the CIFAR
  BatchNorm ResNet-32 on 32x32x3) trained on random images with 10-class cross-entropy and
  Adam (lr 1e-3). jaxinv runs :func:`jaxinv.train.supervised_step`.
- ``--step distill`` (``--model lenet5`` only): the ZSKD distillation step, a LeNet-5
  teacher into a LeNet-5-half student on random 32x32x1 transfer images, each example warped
  on the fly (zoom 0.1, translation 0.08, rotation 10°) and the teacher asked on the warped
  batch inside the step, KD loss at τ = 20 scaled by τ², Adam (lr 1e-3). jaxinv runs
  :func:`jaxinv.train.distill_step` with ``teacher.logits`` and the teacher's variables as
  ``context``, as ``jaxinv.tasks.distill`` does.

jaxinv's step is wrapped and jitted (donating the state) as :func:`jaxinv.train.fit` does, on
a state from :func:`jaxinv.train.init_model_state`, and every batch is placed with
:func:`jaxinv.parallel.shard_batch` as `fit`'s batch iterator does. PyTorch is
:class:`benchmarks.torch_reference.TrainBenchmark` (the textbook loop on one fixed batch) in
three settings: eager with all threads, eager with one (its multi-threaded speed collapses
when other processes load the CPU), and the same step function through ``torch.compile``
(default mode, all threads); if compilation fails on this CPU its column says why. The ratio
is to the fastest setting that ran. All run in the same process, interleaved, best of
``--repeats``; compilation (jaxinv's and torch.compile's) and warm-up steps are excluded.
torch is imported only when the PyTorch side runs, so ``--help`` works without it.

Run from the repository root, on a quiet machine (the load average is recorded)::

    python benchmarks/bench_train.py --model lenet5 --step supervised --batch_size 128 \\
        --num_steps 200 --repeats 3 [--skip_torch_compile] [--write]

``--write`` replaces this configuration's section of BENCHMARKS.md: ``train_speed`` for
LeNet-5, supervised, batch 128, and ``train_speed_<model>_<step>_<batch size>`` otherwise.
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
    NUM_CLASSES,
    TORCH_WARMUP_STEPS,
    TorchRuns,
    command_line,
    fastest_torch,
    import_torch,
    import_torch_reference,
    machine_info,
    machine_markdown,
    section_header,
    timed,
    torch_cell,
    torch_columns,
    torch_setups,
)
from jaxinv import augment, models, parallel, report, train
from jaxinv.teacher import from_module

DEFAULT_SECTION = "train_speed"
LEARNING_RATE = 1e-3
# Distinct host batches cycled through the timed steps, so that no step reuses a placed array.
NUM_HOST_BATCHES = 4
MODEL_CHOICES = ("lenet5", "resnet32")
STEP_CHOICES = ("supervised", "distill")
IMAGE_SHAPES = {"lenet5": (32, 32, 1), "lenet5_half": (32, 32, 1), "resnet32": (32, 32, 3)}
MODEL_NAMES = {"lenet5": "LeNet-5", "lenet5_half": "LeNet-5-half", "resnet32": "ResNet-32"}
# The ZSKD distillation step (experiments/configs/zskd.py, distill block): τ and augmentation.
KD_TEMPERATURE = 20.0
ZSKD_AUGMENT = augment.AugmentConfig(scale=0.1, translate=0.08, rotate_degrees=10.0)
DISTILL_STUDENT = "lenet5_half"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults run LeNet-5 in about a minute on 2 cores."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODEL_CHOICES, default="lenet5",
                        help="the trained model (distill: the teacher; the student is its half)")
    parser.add_argument("--step", choices=STEP_CHOICES, default="supervised",
                        help="supervised cross-entropy, or the ZSKD KD step with augmentation")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--num_steps", type=int, default=200, help="timed steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch_threads", type=int, default=None,
                        help="torch.set_num_threads; default: torch's own (all cores)")
    parser.add_argument("--skip_torch_compile", action="store_true",
                        help="leave out the torch.compile column (compiling takes a minute)")
    parser.add_argument("--write", action="store_true",
                        help="replace this configuration's section of BENCHMARKS.md")
    args = parser.parse_args(argv)
    for name in ("batch_size", "num_steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.step == "distill" and args.model != "lenet5":
        parser.error("--step distill is the ZSKD step, LeNet-5 teacher -> LeNet-5-half "
                     f"student; use --model lenet5 (got --model {args.model})")
    return args


def section_name(model: str, step: str, batch_size: int) -> str:
    """BENCHMARKS.md section of a configuration: `train_speed` for the default one."""
    if (model, step, batch_size) == ("lenet5", "supervised", 128):
        return DEFAULT_SECTION
    return f"{DEFAULT_SECTION}_{model}_{step}_{batch_size}"


def trained_model_name(args: argparse.Namespace) -> str:
    """The model whose parameters the step updates: the student when distilling."""
    return DISTILL_STUDENT if args.step == "distill" else args.model


def optimizer_config() -> ml_collections.ConfigDict:
    """Adam at a constant 1e-3, the PyTorch baseline's optimiser."""
    return ml_collections.ConfigDict(
        {"name": "adam", "learning_rate": LEARNING_RATE, "schedule": "constant"})


class JaxTrainer:
    """jaxinv's training step with fixed random host batches.

    The step is `train.supervised_step` or `train.distill_step` inside the same wrapper
    `train.fit` jits: the run key folded with the step count, the step count advanced, the
    state donated, the context (the teacher's variables) replicated as `fit` does. (`fit`
    itself is not timed: it compiles afresh on every call and checkpoints and logs as it goes.)
    The state is rebuilt for every run because the step donates it; building it is not timed.
    """

    def __init__(self, model_name: str, step: str, batch_size: int, seed: int):
        parallel.check_divisible(batch_size, "batch_size")
        image_shape = IMAGE_SHAPES[model_name]
        self.tx = train.make_optimizer(optimizer_config(), num_steps=1)
        self.init_rng, run_rng = jax.random.split(jax.random.key(seed))
        rng = np.random.default_rng(seed)
        images = [rng.uniform(size=(batch_size, *image_shape)).astype(np.float32)
                  for _ in range(NUM_HOST_BATCHES)]
        if step == "supervised":
            self.model = models.get_model(model_name, num_classes=NUM_CLASSES)
            step_fn = train.supervised_step(self.model, self.tx)
            self.context = None
            # Host arrays, as `data.iterate_batches` draws them for `fit`.
            self.batches = [
                {"images": batch,
                 "labels": rng.integers(0, NUM_CLASSES, size=batch_size).astype(np.int32)}
                for batch in images]
        else:
            teacher_model = models.get_model(model_name, num_classes=NUM_CLASSES)
            teacher = from_module(
                teacher_model,
                models.init_variables(teacher_model, jax.random.key(seed + 1), image_shape),
                image_shape)
            self.model = models.get_model(DISTILL_STUDENT, num_classes=NUM_CLASSES)
            step_fn = train.distill_step(self.model, self.tx, teacher.logits,
                                         temperature=KD_TEMPERATURE,
                                         augment_config=ZSKD_AUGMENT)
            self.context = parallel.replicate(teacher.variables)
            # The transfer images only, as `tasks.distill` passes them when augmenting.
            self.batches = [{"images": batch} for batch in images]

        def train_step(state: train.TrainState, batch: dict, context) -> tuple:
            new_models, measurements = step_fn(state.models, batch,
                                               jax.random.fold_in(run_rng, state.step), context,
                                               state.step)
            return train.TrainState(step=state.step + 1, models=new_models), measurements

        self.train_step = jax.jit(train_step, donate_argnums=0)
        self.init_state = jax.jit(
            lambda rng: train.TrainState(
                step=jnp.zeros((), jnp.int32),
                models={"model": train.init_model_state(self.model, self.tx, rng, image_shape)}),
            out_shardings=parallel.replicated())

    def fresh_state(self) -> train.TrainState:
        """A newly initialised, replicated train state, as `fit` starts from."""
        return self.init_state(self.init_rng)

    def run(self, num_steps: int) -> float:
        """Seconds for `num_steps` steps from a fresh state, waiting for the last one."""
        state = jax.block_until_ready(self.fresh_state())

        def steps() -> None:
            nonlocal state
            for step in range(num_steps):
                # Each step places its batch on the mesh, so host-to-device is measured too.
                batch = parallel.shard_batch(self.batches[step % NUM_HOST_BATCHES])
                state, measurements = self.train_step(state, batch, self.context)
            # The steps are dispatched asynchronously; wait for the last one to finish.
            jax.block_until_ready((state, measurements))

        return timed(steps)


def check_models_match(args: argparse.Namespace) -> None:
    """Refuses to compare models whose jaxinv and PyTorch parameter counts differ.

    Raises:
      SystemExit: a PyTorch model of this configuration is not jaxinv's model.
    """
    torch_reference = import_torch_reference()
    names = [args.model] + ([DISTILL_STUDENT] if args.step == "distill" else [])
    for name in names:
        variables = jax.eval_shape(
            lambda name=name: models.init_variables(
                models.get_model(name, num_classes=NUM_CLASSES), jax.random.key(0),
                IMAGE_SHAPES[name]))
        jax_count = models.count_params(variables["params"])
        torch_count = torch_reference.num_params(torch_reference.build_model(name, NUM_CLASSES))
        if jax_count != torch_count:
            raise SystemExit(f"{name}: jaxinv has {jax_count:,} parameters, the PyTorch "
                             f"reference {torch_count:,}; the comparison would not be fair.")
        print(f"  {MODEL_NAMES[name]}: {jax_count:,} parameters in both frameworks", flush=True)
    if args.step == "distill":
        torch_augment = {key: getattr(ZSKD_AUGMENT, key) for key in torch_reference.ZSKD_AUGMENT}
        if (torch_augment != torch_reference.ZSKD_AUGMENT or ZSKD_AUGMENT.hflip
                or torch_reference.KD_TEMPERATURE != KD_TEMPERATURE):
            raise SystemExit("the PyTorch distill step's augmentation or temperature differs "
                             "from jaxinv's; update benchmarks/torch_reference.py")


def measure(args: argparse.Namespace) -> tuple[dict[str, list[float]], TorchRuns]:
    """Interleaved jaxinv and PyTorch runs; images/s of each run, and the PyTorch settings."""
    trainer = JaxTrainer(args.model, args.step, args.batch_size, args.seed)
    trainer.run(2)  # compile, and warm the allocator as torch's warm-up steps do
    torch_reference = import_torch_reference()
    setups = torch_setups(args.torch_threads, not args.skip_torch_compile)
    torch_runs = TorchRuns(
        lambda **setup: torch_reference.TrainBenchmark(
            args.model, args.step, args.batch_size, seed=args.seed,
            learning_rate=LEARNING_RATE, **setup),
        setups, TORCH_WARMUP_STEPS)
    work = args.batch_size * args.num_steps
    runs: dict[str, list[float]] = {"jaxinv": [], **{key: [] for key in setups}}
    for repeat in range(args.repeats):
        runs["jaxinv"].append(work / trainer.run(args.num_steps))
        for key in setups:
            seconds = torch_runs.seconds(key, args.num_steps)
            if seconds is not None:
                runs[key].append(work / seconds)
        print(f"  repeat {repeat + 1}/{args.repeats}: " + ", ".join(
            f"{name} {values[-1]:,.0f}" for name, values in runs.items() if values)
            + " images/s", flush=True)
    return runs, torch_runs


def setup_text(args: argparse.Namespace) -> tuple[str, str, str]:
    """What both frameworks run: (the step in words, jaxinv's step, PyTorch's step)."""
    height, width, channels = IMAGE_SHAPES[args.model]
    images = f"random {height}x{width}x{channels} images"
    if args.step == "supervised":
        return (f"Supervised: {MODEL_NAMES[args.model]} on {images}, 10-class cross-entropy, "
                f"Adam (lr {LEARNING_RATE:g}).", "`train.supervised_step`",
                "zero_grad, forward, cross-entropy, backward, Adam step")
    return (f"The ZSKD distillation step: a frozen {MODEL_NAMES[args.model]} teacher (random "
            f"weights) into a {MODEL_NAMES[DISTILL_STUDENT]} student on {images} (the transfer "
            f"set), each example warped on the fly (zoom {ZSKD_AUGMENT.scale:g}, translation "
            f"{ZSKD_AUGMENT.translate:g}, rotation {ZSKD_AUGMENT.rotate_degrees:g}°) and the "
            f"teacher asked on the warped batch inside the step, KD loss at "
            f"τ = {KD_TEMPERATURE:g} scaled by τ², Adam (lr {LEARNING_RATE:g}).",
            "`train.distill_step(student, tx, teacher.logits, temperature=20.0, "
            "augment_config=AugmentConfig(scale=0.1, translate=0.08, rotate_degrees=10.0))` "
            "with the teacher's variables as context, as `tasks.distill` runs it",
            "`affine_grid` + `grid_sample` warp and teacher forward under `no_grad`, then "
            "zero_grad, student forward, KD loss, backward, Adam step")


def report_body(args: argparse.Namespace, command: str, info: dict[str, str],
                runs: dict[str, list[float]], torch_runs: TorchRuns) -> str:
    """The BENCHMARKS.md section: setup, machine and the result table."""
    best = {name: max(values) for name, values in runs.items() if values}
    columns = torch_columns(runs)
    torch_key, torch_best = fastest_torch(best)
    torch_name = dict(columns)[torch_key]
    model = (f"{MODEL_NAMES[args.model]} -> {MODEL_NAMES[DISTILL_STUDENT]}"
             if args.step == "distill" else MODEL_NAMES[args.model])
    what, jax_step, torch_step = setup_text(args)
    table = report.markdown_table(
        ["model", "step", "batch size", "steps", "jaxinv images/s",
         *(f"{label} images/s" for _, label in columns), "fastest PyTorch",
         "jaxinv / fastest PyTorch"],
        [[model, args.step, args.batch_size, args.num_steps, f"{best['jaxinv']:,.0f}",
          *(torch_cell(best, torch_runs.failures, key) for key, _ in columns), torch_name,
          f"{best['jaxinv'] / torch_best:.2f}x"]])
    compiled = [key for key in torch_runs.warmup_seconds if torch_runs.setups[key]["compile"]]
    if args.skip_torch_compile:
        compile_note = "`torch.compile` not measured (`--skip_torch_compile`). "
    elif compiled and compiled[0] not in torch_runs.failures:
        compile_note = (f"`torch.compile` (default mode) compiled and warmed up in "
                        f"{torch_runs.warmup_seconds[compiled[0]]:.0f} s, excluded. ")
    else:
        compile_note = "`torch.compile` failed on this machine (see the table). "
    return "\n".join([
        *section_header(
            f"## Training speed: jaxinv vs. PyTorch ({model}, {args.step}, batch "
            f"{args.batch_size}, CPU)", command, info),
        f"Model: {model}; step: {args.step}; batch size: {args.batch_size}; processor: "
        f"{info['cpu']}. {what} jaxinv: {jax_step}, in `train.fit`'s step wrapper (jitted, "
        "donated state), each batch placed by `parallel.shard_batch`. PyTorch: "
        f"`torch_reference.TrainBenchmark`, {torch_step} on one fixed batch, eager with all "
        "threads and with one (its multi-threaded speed collapses when other processes load "
        "the CPU), and the same step function through `torch.compile`. "
        f"{compile_note}The ratio is to the "
        f"fastest PyTorch setting that ran, here {torch_name}. Best of {args.repeats} "
        "interleaved runs in one process; jaxinv compilation and warm-up steps excluded.",
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
    section = section_name(args.model, args.step, args.batch_size)
    print(command, "\n" + machine_markdown(info), flush=True)
    check_models_match(args)
    runs, torch_runs = measure(args)
    body = report_body(args, command, info, runs, torch_runs)
    print("\n" + body)
    if args.write:
        report.update_markdown_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), section, body)
        print(f"\nwrote section {section!r} of BENCHMARKS.md")


if __name__ == "__main__":
    main()
