"""Data Impressions synthesis speed: jaxinv's engine against PyTorch, LeNet-5 on CPU.

Both sides optimise the same objective on the same geometry: a frozen LeNet-5 teacher on
32x32x1 images, a chunk of pixels initialised uniform in [0, 1], CE(y, softmax(T(x) / 20)) to
Dirichlet targets y, Adam with a constant learning rate, and a clip to [0, 1] after every step.
The PyTorch side is :func:`benchmarks.torch_reference.torch_di_synthesis_throughput` (eager,
one batch at a time, as the reference ZSKD code runs). The two are run in the same process,
interleaved, and the best of ``--repeats`` is kept, so a burst of load from other processes
hits both and the best run approximates an idle machine.

jaxinv is measured twice:

- the public engine, :func:`jaxinv.synthesis.synthesize` on a fresh workdir with
  ``--num_chunks`` chunks: chunk initialisation, the compiled scan, the final teacher logits
  and the Orbax write of every chunk, after a warm-up run on one chunk that compiles the same
  shapes (compilation is a one-off cost per run and is excluded);
- the bare compiled step loop, ``jaxinv.synthesis.engine._run_steps`` on one chunk, so that
  the difference shows the engine's overhead.

PyTorch (:class:`benchmarks.torch_reference.SynthesisBenchmark`) is measured three ways in
the headline: eager with all its threads, eager with one (eager PyTorch's OpenMP threads wait
for each other at every op, so on a loaded CPU its multi-threaded speed can drop 5-20x below
its single-threaded speed), and the same step function through ``torch.compile`` (default
mode, all threads), timed after a warm-up that compiles it; if compilation fails on this CPU
its column says why. Ratios are taken to the fastest working PyTorch setting, and the PyTorch
number is its bare step loop, so the end-to-end ratio is the conservative one. The scaling
curve compares eager PyTorch only (compiling every size would take minutes each). Weights
do not change the work done, so a random teacher with a fixed seed is used unless
``--teacher_workdir`` names a trained LeNet-5. torch is imported only when the PyTorch side
runs, so ``--help`` works without it.

Run from the repository root, on a quiet machine (the load average is recorded)::

    python benchmarks/bench_synthesis.py --chunk_size 256 --num_steps 100 --repeats 3 \
        --sizes 32,64,128,256,512,1024 [--skip_torch_compile] [--write]

Prefixing ``taskset -c 0`` gives a per-core comparison that is less sensitive to other load.
With the defaults a run takes about 5 minutes on 2 idle cores, plus about a minute to
compile the PyTorch step. ``--write`` replaces the
``synthesis_speed`` section of BENCHMARKS.md; the scaling plot goes to
``benchmarks/figures/synthesis_scaling.png`` on every run.
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
import datetime
import functools
import platform
import shlex
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType

import flax
import jax
import numpy as np

from jaxinv import models, parallel, report
from jaxinv.synthesis import engine, synthesize
from jaxinv.synthesis.impressions import impressions_method
from jaxinv.synthesis.method import SynthesisMethod
from jaxinv.teacher import Teacher, from_module, load_teacher

IMAGE_SHAPE = (32, 32, 1)
NUM_CLASSES = 10
TEMPERATURE = 20.0
LEARNING_RATE = 0.05
# The bar the project set for this benchmark: jaxinv at least 1.5x eager PyTorch.
TARGET_RATIO = 1.5
SECTION = "synthesis_speed"
# Untimed PyTorch steps before the timed ones (allocator warm-up; compilation when compiled).
TORCH_WARMUP_STEPS = 5
FIGURE = os.path.join("benchmarks", "figures", "synthesis_scaling.png")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults keep the whole run under about 5 minutes on 2 cores."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunk_size", type=int, default=256,
                        help="examples optimised jointly (jaxinv chunk, PyTorch batch)")
    parser.add_argument("--num_steps", type=int, default=100,
                        help="Adam steps per chunk in the headline measurement")
    parser.add_argument("--num_chunks", type=int, default=3,
                        help="chunks synthesised by the timed end-to-end engine run")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--sizes", type=str, default="32,64,128,256,512,1024",
                        help="comma-separated chunk sizes of the scaling curve ('' skips it)")
    parser.add_argument("--scaling_image_steps", type=int, default=4096,
                        help="work per scaling point: steps = max(10, this // size), so small "
                             "sizes run long enough to time")
    parser.add_argument("--teacher_workdir", type=str, default=None,
                        help="a `jaxinv train` workdir (or saved model folder) of a LeNet-5; "
                             "default: random init")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch_threads", type=int, default=None,
                        help="torch.set_num_threads; default: torch's own (all cores)")
    parser.add_argument("--skip_torch_compile", action="store_true",
                        help="leave out the torch.compile column (compiling takes a minute)")
    parser.add_argument("--write", action="store_true",
                        help="replace the synthesis_speed section of BENCHMARKS.md")
    args = parser.parse_args(argv)
    for name in ("chunk_size", "num_steps", "num_chunks", "repeats", "scaling_image_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    return args


# ---------------------------------------------------------------------------------------------
# Helpers shared with bench_train.py.


def import_torch() -> ModuleType:
    """torch, imported on first use so that `--help` and the jaxinv side run without it.

    Raises:
      SystemExit: torch is not installed, with how to install it.
    """
    try:
        import torch
    except ImportError as err:
        raise SystemExit("The PyTorch baseline needs torch, which is not installed: "
                         "`pip install torch` (the CPU build is enough).") from err
    return torch


def import_torch_reference() -> ModuleType:
    """`benchmarks.torch_reference`, after checking that torch is installed."""
    import_torch()
    from benchmarks import torch_reference

    return torch_reference


def command_line(script: str, argv: Sequence[str]) -> str:
    """The command that reproduces this run, as typed from the repository root."""
    return " ".join(["python", script, *(shlex.quote(arg) for arg in argv)])


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, str]:
    """What the numbers depend on, captured at the start of a run (load average included)."""
    torch = import_torch()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return {
        "cpu": f"{cpu_model()}, nproc {os.cpu_count()}, usable by this process "
               f"{len(os.sched_getaffinity(0))}",
        "load average (1, 5, 15 min) at start": load,
        "jax": f"{jax.__version__} (backend {jax.default_backend()}, "
               f"{jax.device_count()} device(s)), flax {flax.__version__}",
        "torch": f"{torch.__version__}, {torch.get_num_threads()} threads",
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") or "(unset)",
    }


def machine_markdown(info: dict[str, str]) -> str:
    """The machine description as a markdown bullet list."""
    return "\n".join(f"- {key}: {value}" for key, value in info.items())


def section_header(title: str, command: str, info: dict[str, str]) -> list[str]:
    """The opening lines of a BENCHMARKS.md speed section: title, date, command, machine."""
    return [title, "", f"Date: {datetime.date.today().isoformat()}", "",
            f"Command: `{command}`", "", "Machine:", "", machine_markdown(info), ""]


def compare_with_eager_torch(title: str, script: str, argv: Sequence[str], description: str,
                             jaxinv_rate: Callable[[], float],
                             torch_rate: Callable[[int], float], repeats: int) -> str:
    """A speed section: jaxinv's rate against eager PyTorch's with all its threads and with
    one (`torch_rate(threads)`), interleaved `repeats` times, the best of each kept; rates in
    image-steps per second, the ratio to the faster PyTorch setting in bold."""
    torch = import_torch()
    threads = torch.get_num_threads()
    sides = {"jaxinv": jaxinv_rate,
             f"PyTorch eager, {threads} threads": functools.partial(torch_rate, threads),
             "PyTorch eager, 1 thread": functools.partial(torch_rate, 1)}
    best = dict.fromkeys(sides, 0.0)
    for _ in range(repeats):
        for name, rate in sides.items():
            best[name] = max(best[name], rate())
        print({name: round(rate) for name, rate in best.items()}, flush=True)
    fastest_torch = max(rate for name, rate in best.items() if name != "jaxinv")
    return "\n".join(section_header(title, command_line(script, argv), machine_info()) + [
        f"{description} Image-steps per second, best of {repeats}:", "",
        report.markdown_table(["implementation", "image-steps/s"],
                              [(name, f"{rate:,.0f}") for name, rate in best.items()]), "",
        f"jaxinv / fastest PyTorch: **{best['jaxinv'] / fastest_torch:.2f}×**"])


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of `fn()`; `fn` must block until its device work is done."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# The two sides.


def build_teacher(teacher_workdir: str | None, seed: int) -> Teacher:
    """A LeNet-5 teacher for 32x32x1 images: trained from a workdir, or randomly initialised.

    Raises:
      SystemExit: the workdir's model is not the LeNet-5 that the PyTorch side runs.
    """
    if teacher_workdir:
        teacher = load_teacher(teacher_workdir)
        num_params = models.count_params(teacher.variables["params"])
        if tuple(teacher.image_shape) != IMAGE_SHAPE or num_params != 61_706:
            raise SystemExit(
                f"{teacher_workdir} holds a {type(teacher.model).__name__} with {num_params} "
                f"parameters on {teacher.image_shape} images; the PyTorch baseline is LeNet-5 "
                f"(61,706 parameters) on {IMAGE_SHAPE}, so the comparison would not be fair.")
        return teacher
    model = models.get_model("lenet5", num_classes=NUM_CLASSES)
    variables = models.init_variables(model, jax.random.key(seed), IMAGE_SHAPE)
    return from_module(model, variables, IMAGE_SHAPE)


def dirichlet_targets(num_examples: int, seed: int) -> np.ndarray:
    """(N, K) Dirichlet targets with a random strictly positive concentration, as torch's."""
    rng = np.random.default_rng(seed)
    concentration = rng.uniform(size=NUM_CLASSES) + 0.1
    return rng.dirichlet(concentration, size=num_examples).astype(np.float32)


def di_method(teacher: Teacher, num_steps: int) -> SynthesisMethod:
    """Data Impressions with PyTorch's settings: τ = 20, Adam at a constant lr, clip [0, 1].

    jaxinv sums the per-example losses where the reference takes the batch mean; Adam is
    invariant to that constant factor (up to its epsilon), so the trajectories match.
    """
    return impressions_method(teacher, temperature=TEMPERATURE, num_steps=num_steps,
                              learning_rate=LEARNING_RATE, schedule="constant")


def run_engine(method: SynthesisMethod, teacher: Teacher, targets: np.ndarray,
               chunk_size: int, seed: int) -> None:
    """One end-to-end `synthesize` into a fresh temporary workdir (so nothing is resumed)."""
    with tempfile.TemporaryDirectory(prefix="bench_synthesis_") as workdir:
        synthesize(method, teacher, {"targets": targets},
                   metadata={"class": targets.argmax(1),
                             "beta": np.ones(len(targets), np.float32)},
                   seed=seed, workdir=workdir, chunk_size=chunk_size)


def step_loop_fn(method: SynthesisMethod, teacher: Teacher, num_steps: int,
                 chunk_size: int, seed: int) -> Callable[[], float]:
    """A function that times `num_steps` compiled steps on one chunk, as the engine calls them.

    Each call starts from a fresh chunk, because `engine._run_steps` donates its state (pixels,
    optimiser state and the chunk's inputs); placing the inputs and initialising the chunk are
    done before the clock starts.
    """
    teacher_variables = parallel.replicate(teacher.variables)
    targets = dirichlet_targets(chunk_size, seed)
    init_rng, chunk_rng = jax.random.split(jax.random.key(seed))

    def run() -> float:
        inputs = parallel.shard_batch({"targets": targets})
        state = jax.block_until_ready(engine._init_chunk(method, inputs, init_rng))
        return timed(lambda: jax.block_until_ready(engine._run_steps(
            method, num_steps, teacher_variables, state, chunk_rng, 0)))

    return run


def torch_seconds(batch_size: int, num_steps: int, threads: int) -> float:
    """Seconds eager PyTorch takes for `num_steps` DI steps on a fresh batch (warm-up excluded).

    `threads` applies to this call only; torch's global thread count is restored after it.
    """
    throughput = import_torch_reference().torch_di_synthesis_throughput(
        batch_size, num_steps, temperature=TEMPERATURE, learning_rate=LEARNING_RATE,
        num_threads=threads)
    return batch_size * num_steps / throughput


def torch_thread_counts(threads: int | None) -> list[int]:
    """The eager torch configurations to measure: all threads (or `threads`), and one thread.

    Eager PyTorch's OpenMP threads wait on each other at every op, so when other processes
    load the CPU its multi-threaded throughput can fall far below its single-threaded one.
    Measuring both and comparing jaxinv with the faster keeps the ratio conservative.
    """
    threads = threads or import_torch().get_num_threads()
    return [threads] if threads == 1 else [threads, 1]


def torch_label(threads: int, compiled: bool = False) -> str:
    """Result key of a torch configuration: `torch_2t` (eager), `torch_compiled_2t`."""
    return f"torch_{'compiled_' if compiled else ''}{threads}t"


def torch_setups(threads: int | None, compile: bool) -> dict[str, dict]:
    """Result key -> `num_threads` and `compile` of each PyTorch setting to measure.

    Eager with all threads (or `threads`) and with one (see `torch_thread_counts`), and, when
    `compile`, the same step through `torch.compile` with all threads.
    """
    counts = torch_thread_counts(threads)
    setups = {torch_label(count): {"num_threads": count, "compile": False} for count in counts}
    if compile:
        setups[torch_label(counts[0], True)] = {"num_threads": counts[0], "compile": True}
    return setups


def short_reason(err: BaseException) -> str:
    """A one-line, table-safe reason for a failure: the exception's type and first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    text = text.replace("|", "/").replace("`", "'")
    return text if len(text) <= 120 else text[:117] + "..."


class TorchRuns:
    """PyTorch settings built and warmed up once, then timed repeatedly; compile failures kept.

    Each setting is an object with `warm_up(steps)` and `seconds(steps)` (a
    `torch_reference.TrainBenchmark` or `SynthesisBenchmark`), built by `make(**setup)`. A
    compiled setting that raises while compiling or running is dropped and its reason kept in
    `failures`, so the table can say "fails: <reason>"; eager settings must work.
    """

    def __init__(self, make: Callable[..., object], setups: dict[str, dict],
                 warmup_steps: int):
        self.setups = setups
        self.benches: dict[str, object] = {}
        self.failures: dict[str, str] = {}
        self.warmup_seconds: dict[str, float] = {}
        for key, setup in setups.items():
            try:
                bench = make(**setup)
                self.warmup_seconds[key] = bench.warm_up(warmup_steps)
            except Exception as err:
                if not setup["compile"]:
                    raise
                self._fail(key, err)
                continue
            self.benches[key] = bench
            if setup["compile"]:
                print(f"  torch.compile: compiled and warmed up in "
                      f"{self.warmup_seconds[key]:.1f} s", flush=True)

    def _fail(self, key: str, err: Exception) -> None:
        self.failures[key] = short_reason(err)
        self.benches.pop(key, None)
        print(f"  torch.compile fails: {self.failures[key]}", flush=True)

    def seconds(self, key: str, num_steps: int) -> float | None:
        """Seconds of `num_steps` steps of one setting; None if it failed (now or before)."""
        if key not in self.benches:
            return None
        try:
            return self.benches[key].seconds(num_steps)
        except Exception as err:
            if not self.setups[key]["compile"]:
                raise
            self._fail(key, err)
            return None


# ---------------------------------------------------------------------------------------------
# Measurements.


def measure_headline(args: argparse.Namespace,
                     teacher: Teacher) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Interleaved runs of the engine, the bare step loop and each PyTorch setting.

    Returns:
      image-steps/s of every run per measurement (empty for a failed PyTorch setting), and
      the failure reason of each PyTorch setting that failed.
    """
    method = di_method(teacher, args.num_steps)
    targets = dirichlet_targets(args.num_chunks * args.chunk_size, args.seed)
    setups = torch_setups(args.torch_threads, not args.skip_torch_compile)
    work = {"engine": len(targets) * args.num_steps,
            "step_loop": args.chunk_size * args.num_steps}
    work.update({key: args.chunk_size * args.num_steps for key in setups})
    step_loop = step_loop_fn(method, teacher, args.num_steps, args.chunk_size, args.seed)
    # Compiles the engine's _init_chunk, _run_steps and _finish_chunk for these shapes (their
    # jit caches key on the method and teacher objects, which the timed runs reuse) and warms
    # up Orbax.
    run_engine(method, teacher, targets[:args.chunk_size], args.chunk_size, args.seed)
    step_loop()
    torch_reference = import_torch_reference()
    # Each PyTorch setting is built once and warmed up (compiled) before the timed runs.
    torch_runs = TorchRuns(
        lambda **setup: torch_reference.SynthesisBenchmark(
            args.chunk_size, temperature=TEMPERATURE, learning_rate=LEARNING_RATE,
            seed=args.seed, **setup),
        setups, TORCH_WARMUP_STEPS)
    runs: dict[str, list[float]] = {name: [] for name in work}
    for repeat in range(args.repeats):
        seconds = {
            "engine": timed(lambda: run_engine(method, teacher, targets, args.chunk_size,
                                               args.seed)),
            "step_loop": step_loop(),
        }
        for key in setups:
            seconds[key] = torch_runs.seconds(key, args.num_steps)
        for name, value in seconds.items():
            if value is not None:
                runs[name].append(work[name] / value)
        print(f"  repeat {repeat + 1}/{args.repeats}: " + ", ".join(
            f"{name} {runs[name][-1]:,.0f}" for name in work if seconds[name] is not None)
            + " image-steps/s", flush=True)
    return runs, torch_runs.failures


def scaling_steps(size: int, image_steps: int) -> int:
    """Steps for one scaling point: about `image_steps` of work, and never fewer than 10."""
    return max(10, image_steps // size)


def measure_scaling(args: argparse.Namespace, teacher: Teacher,
                    sizes: Sequence[int]) -> list[dict[str, float]]:
    """Best-of-repeats bare step-loop throughput of both frameworks at each chunk size."""
    thread_counts = torch_thread_counts(args.torch_threads)
    rows = []
    for size in sizes:
        parallel.check_divisible(size, "scaling size")
        num_steps = scaling_steps(size, args.scaling_image_steps)
        method = di_method(teacher, num_steps)
        step_loop = step_loop_fn(method, teacher, num_steps, size, args.seed)
        step_loop()  # compile this shape
        row = {"size": size, "num_steps": num_steps, "jaxinv": 0.0}
        row.update({torch_label(threads): 0.0 for threads in thread_counts})
        for _ in range(args.repeats):
            row["jaxinv"] = max(row["jaxinv"], size * num_steps / step_loop())
            for threads in thread_counts:
                label = torch_label(threads)
                row[label] = max(row[label], size * num_steps / torch_seconds(size, num_steps,
                                                                              threads))
        row["torch"] = max(row[torch_label(threads)] for threads in thread_counts)
        row["ratio"] = row["jaxinv"] / row["torch"]
        rows.append(row)
        print(f"  size {size:5d} ({num_steps} steps): jaxinv {row['jaxinv']:,.0f}, torch "
              + ", ".join(f"{row[torch_label(t)]:,.0f} ({t} thr)" for t in thread_counts)
              + f" image-steps/s; ratio to the faster torch {row['ratio']:.2f}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# Output.


def torch_columns(record: Iterable[str]) -> list[tuple[str, str]]:
    """(key, label) of each torch configuration among a record's keys: eager settings with the
    most threads first, then the compiled one."""
    def parse(key: str) -> tuple[bool, int]:
        compiled = key.startswith("torch_compiled_")
        return compiled, int(key.rsplit("_", 1)[1][:-1])

    keys = sorted((key for key in record if key.startswith("torch_")),
                  key=lambda key: (parse(key)[0], -parse(key)[1]))
    columns = []
    for key in keys:
        compiled, count = parse(key)
        columns.append((key, f"PyTorch {'torch.compile' if compiled else 'eager'}, "
                             f"{count} thread{'s' if count > 1 else ''}"))
    return columns


def fastest_torch(best: dict[str, float]) -> tuple[str, float]:
    """(key, throughput) of the fastest PyTorch setting that ran."""
    key = max((key for key in best if key.startswith("torch_")), key=best.__getitem__)
    return key, best[key]


def torch_cell(best: dict[str, float], failures: dict[str, str], key: str) -> str:
    """A table cell: the setting's best throughput, or "fails: <reason>"."""
    return f"fails: {failures[key]}" if key in failures else f"{best[key]:,.0f}"


def plot_scaling(rows: Sequence[dict[str, float]], path: str, title: str) -> None:
    """Throughput of both frameworks against chunk size, with the ratio on a second axis."""
    import matplotlib

    matplotlib.use("Agg")  # no display on benchmark machines
    import matplotlib.pyplot as plt

    sizes = [row["size"] for row in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(sizes, [row["jaxinv"] for row in rows], "o-", label="jaxinv (compiled step loop)")
    for (key, label), marker in zip(torch_columns(rows[0]), "sv^", strict=False):
        ax.plot(sizes, [row[key] for row in rows], marker=marker, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(size) for size in sizes])
    ax.set_xlabel("chunk (batch) size")
    ax.set_ylabel("image-steps / s")
    ax.set_ylim(bottom=0)
    ratio_ax = ax.twinx()
    ratio_ax.plot(sizes, [row["ratio"] for row in rows], "k:", marker=".",
                  label="jaxinv / faster eager PyTorch (right)")
    ratio_ax.axhline(TARGET_RATIO, color="grey", linewidth=0.8, linestyle="--",
                     label=f"{TARGET_RATIO:g}x bar (right)")
    ratio_ax.set_ylabel("jaxinv / faster eager PyTorch")
    # Headroom above the bar line so that it stays visible when every ratio is below it.
    ratio_ax.set_ylim(0, 1.2 * max(TARGET_RATIO, *(row["ratio"] for row in rows)))
    handles = ax.get_legend_handles_labels()[0] + ratio_ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="best", fontsize="small")
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def headline_table(args: argparse.Namespace, best: dict[str, float],
                   failures: dict[str, str], torch_keys: Iterable[str]) -> str:
    """Markdown table of the best throughputs and the ratios to the fastest PyTorch."""
    torch_best = fastest_torch(best)[1]
    rows = [
        [f"jaxinv engine end to end: `synthesize`, {args.num_chunks} chunks of "
         f"{args.chunk_size} (init, scan, final logits, Orbax writes)",
         f"{best['engine']:,.0f}", f"{best['engine'] / torch_best:.2f}x"],
        [f"jaxinv compiled step loop: `engine._run_steps`, one chunk of {args.chunk_size}",
         f"{best['step_loop']:,.0f}", f"{best['step_loop'] / torch_best:.2f}x"],
    ]
    rows += [[f"{label}, batch {args.chunk_size}", torch_cell(best, failures, key), ""]
             for key, label in torch_columns(torch_keys)]
    return report.markdown_table(
        ["measurement", "image-steps/s", "jaxinv / fastest PyTorch"], rows)


def scaling_table(rows: Sequence[dict[str, float]]) -> str:
    """Markdown table of the scaling curve."""
    columns = torch_columns(rows[0])
    return report.markdown_table(
        ["chunk size", "steps", "jaxinv image-steps/s",
         *(f"{label} image-steps/s" for _, label in columns), "jaxinv / faster eager PyTorch"],
        [[row["size"], row["num_steps"], f"{row['jaxinv']:,.0f}",
          *(f"{row[key]:,.0f}" for key, _ in columns), f"{row['ratio']:.2f}x"]
         for row in rows])


def report_body(args: argparse.Namespace, command: str, info: dict[str, str],
                runs: dict[str, list[float]], failures: dict[str, str],
                rows: Sequence[dict[str, float]], teacher_note: str) -> str:
    """The BENCHMARKS.md section: setup, machine, the headline table and the scaling curve."""
    best = {name: max(values) for name, values in runs.items() if values}
    torch_key, torch_best = fastest_torch(best)
    torch_name = dict(torch_columns(runs))[torch_key]
    ratio = best["engine"] / torch_best
    verdict = "meets" if ratio >= TARGET_RATIO else "does NOT meet"
    # PyTorch may be faster at another batch size than the headline's: compare with its best.
    fastest = max([{"size": args.chunk_size, "torch": torch_best}, *rows],
                  key=lambda row: row["torch"])
    fastest_ratio = best["engine"] / fastest["torch"]
    fastest_verdict = "meets" if fastest_ratio >= TARGET_RATIO else "does NOT meet"
    lines = [
        *section_header("## Data Impressions synthesis speed: jaxinv vs. PyTorch "
                        f"(LeNet-5, chunk {args.chunk_size}, CPU)", command, info),
        f"Model: LeNet-5 teacher on 32x32x1 images; step: Data Impressions synthesis, "
        f"CE(y, softmax(T(x)/{TEMPERATURE:g})) to Dirichlet targets, Adam "
        f"(lr {LEARNING_RATE:g}, constant), clip to [0, 1], {args.num_steps} steps per chunk of "
        f"{args.chunk_size} (PyTorch: one batch of {args.chunk_size}); teacher: {teacher_note}; "
        f"processor: {info['cpu']}. PyTorch: `torch_reference.SynthesisBenchmark` (its bare "
        "step loop), eager with all threads and with one (its multi-threaded speed collapses "
        "when other processes load the CPU), and the same step through `torch.compile` "
        + ("(default mode, all threads; compilation excluded by a warm-up)"
           if not args.skip_torch_compile else "(not measured: `--skip_torch_compile`)")
        + f"; ratios are to the fastest working setting, here {torch_name}. Best of "
        f"{args.repeats} interleaved runs in one process; jaxinv compilation excluded (a "
        "warm-up run on the same shapes).",
        "",
        headline_table(args, best, failures, runs),
        "",
        f"End to end, jaxinv runs at {ratio:.2f}x the fastest PyTorch setting ({torch_name}): "
        f"it {verdict} the "
        f"{TARGET_RATIO:g}x bar. The engine reaches "
        f"{100 * best['engine'] / best['step_loop']:.0f}% of the bare step loop's throughput; "
        "the rest is chunk init, host syncs, the final logits and the Orbax writes."
        + (f" Against PyTorch at its fastest measured batch ({fastest['size']}, "
           f"{fastest['torch']:,.0f} image-steps/s) the engine runs at {fastest_ratio:.2f}x, "
           f"which {fastest_verdict} the bar." if rows else ""),
    ]
    if rows:
        lines += [
            "",
            "Scaling with the chunk size (bare step loops of jaxinv and eager PyTorch, about "
            f"{args.scaling_image_steps} image-steps per point, best of {args.repeats}):",
            "",
            scaling_table(rows),
            "",
            f"![synthesis throughput against chunk size]({FIGURE})",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the headline comparison and the scaling curve, prints them, optionally writes."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.torch_threads is not None:
        import_torch().set_num_threads(args.torch_threads)
    info = machine_info()
    command = command_line("benchmarks/bench_synthesis.py", argv)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    teacher = build_teacher(args.teacher_workdir, args.seed)
    teacher_note = (f"trained, from `{args.teacher_workdir}`" if args.teacher_workdir
                    else f"random init, seed {args.seed}")
    print(command, "\n" + machine_markdown(info), flush=True)
    print("headline:", flush=True)
    runs, failures = measure_headline(args, teacher)
    print("scaling:", flush=True)
    rows = measure_scaling(args, teacher, sizes)
    if rows:
        plot_scaling(rows, os.path.join(REPO_ROOT, FIGURE),
                     f"DI synthesis, LeNet-5, {len(os.sched_getaffinity(0))} CPU core(s)")
    body = report_body(args, command, info, runs, failures, rows, teacher_note)
    print("\n" + body)
    if args.write:
        report.update_markdown_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), SECTION, body)
        print(f"\nwrote section {SECTION!r} of BENCHMARKS.md")


if __name__ == "__main__":
    main()
