"""DeepInversion and CMI synthesis speed: jaxinv against PyTorch loops, WRN-10-1 on CPU.

Both sides optimise the same objectives on the same geometry: a WRN-10-1 teacher (11.7M
multiply-adds per 32x32x3 image, the CPU-scale CIFAR-10 teacher) with random weights, since
speed does not depend on them. PyTorch is :mod:`benchmarks.torch_bn_inversion`: eager, one
batch at a time, BatchNorm statistics collected by forward hooks, as the reference code
(zju-vipa/DataFree) runs; it is timed with all threads and with one, and the faster is kept.
jaxinv is :func:`jaxinv.synthesis.synthesize` end to end (the compiled scans, checkpoints and
final logits) after a warm-up that compiles the same shapes.

- DeepInversion: ``--batches`` batches of ``--batch_size`` images, ``--num_steps`` steps each.
- CMI: ``--rounds`` rounds of ``--batch_size`` images, ``--num_steps`` generator steps each
  (a fresh generator per round), then one student step (both sides; the student is the
  teacher's architecture). jaxinv's CMI is timed twice: as its phases (what the rounds driver
  runs on CPU) and, in the first repeat only, as one scanned call per round (what it runs on
  accelerators).

Image-steps per second; the two are interleaved ``--repeats`` times and the best of each kept.

    python benchmarks/bench_bn_inversion.py --batch_size 64 --num_steps 20 --repeats 2 [--write]

``--write`` replaces the ``bn_inversion_speed`` section of BENCHMARKS.md.
"""

# ruff: noqa: E402  (the path set-up below has to run before the jaxinv imports)

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import argparse
import dataclasses
import functools
import tempfile

import jax
import numpy as np

from benchmarks.bench_synthesis import (
    command_line,
    import_torch,
    machine_info,
    section_header,
    timed,
)
from jaxinv import models, report
from jaxinv.synthesis import synthesize
from jaxinv.synthesis.cmi import cmi_method
from jaxinv.synthesis.deepinversion import deepinversion_method
from jaxinv.teacher import from_module

SECTION = "bn_inversion_speed"
SCANNED = "CMI, each round one scanned call"
IMAGE_SHAPE = (32, 32, 3)
TEACHER = "wrn10_1"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_steps", type=int, default=20, help="steps per batch or round")
    parser.add_argument("--batches", type=int, default=2, help="DeepInversion batches")
    parser.add_argument("--rounds", type=int, default=2, help="CMI rounds")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    return parser.parse_args(argv)


def _targets(num: int, seed: int) -> np.ndarray:
    classes = np.random.default_rng(seed).integers(0, 10, num)
    return np.eye(10, dtype=np.float32)[classes]


def jaxinv_rates(args, scanned: bool) -> dict[str, float]:
    """Image-steps per second of DeepInversion and CMI through `synthesize`, compile excluded;
    with `scanned`, also of CMI's rounds as one scanned call each."""
    model = models.get_model(TEACHER, num_classes=10)
    teacher = from_module(model, models.init_variables(model, jax.random.key(args.seed),
                                                       IMAGE_SHAPE), IMAGE_SHAPE)
    deepinversion = deepinversion_method(teacher, batch_size=args.batch_size,
                                         num_steps=args.num_steps)
    num_cmi = args.batch_size * args.rounds
    cmi = cmi_method(teacher, num_cmi, batch_size=args.batch_size, num_steps=args.num_steps,
                     generator_width=64, bank_size=4096, num_negatives=1024,
                     student=TEACHER, student_steps=1)
    num_di = args.batch_size * args.batches

    def run(method, num, **kwargs) -> None:
        with tempfile.TemporaryDirectory(prefix="bench_bn_inversion_") as workdir:
            synthesize(method, teacher, {"targets": _targets(num, args.seed)},
                       seed=args.seed, workdir=workdir, **kwargs)

    runs = [("DeepInversion", deepinversion, num_di, {"chunk_size": args.batch_size}),
            ("CMI", cmi, num_cmi, {"checkpoint_every": args.rounds})]
    if scanned:
        # Without its phases the rounds driver runs each round as one scanned call, as on
        # accelerators: what XLA:CPU's slow weight gradients in loops cost.
        runs.append((SCANNED, dataclasses.replace(cmi, phases=()), num_cmi,
                     {"checkpoint_every": args.rounds}))
    rates = {}
    for name, method, num, kwargs in runs:
        run(method, num, **kwargs)  # compiles
        rates[name] = num * args.num_steps / timed(functools.partial(run, method, num, **kwargs))
    return rates


def torch_rates(args, threads: int) -> dict[str, float]:
    from benchmarks.torch_bn_inversion import CMIBenchmark, DeepInversionBenchmark, WideResNet

    jax_model = models.get_model(TEACHER, num_classes=10)
    jax_count = models.count_params(jax.eval_shape(lambda: models.init_variables(
        jax_model, jax.random.key(0), IMAGE_SHAPE))["params"])
    torch_count = sum(p.numel() for p in WideResNet(10, 1).parameters())
    if torch_count != jax_count:
        raise SystemExit(f"The PyTorch WRN-10-1 has {torch_count} parameters, jaxinv's "
                         f"{jax_count}: the comparison would not be fair.")

    rates = {}
    for name, bench, steps in (
            ("DeepInversion", DeepInversionBenchmark(args.batch_size, depth=10,
                                                     seed=args.seed, num_threads=threads),
             args.num_steps * args.batches),
            ("CMI", CMIBenchmark(args.batch_size, num_steps=args.num_steps, depth=10,
                                 seed=args.seed, num_threads=threads),
             args.num_steps * args.rounds)):
        bench.warm_up(2)
        rates[name] = args.batch_size * steps / bench.seconds(steps)
    return rates


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    torch = import_torch()
    info = machine_info()
    all_threads = torch.get_num_threads()
    sides = ("jaxinv", f"PyTorch eager, {all_threads} threads", "PyTorch eager, 1 thread")
    best = {method: dict.fromkeys(sides, 0.0) for method in ("DeepInversion", "CMI")}
    scanned = 0.0
    for repeat in range(args.repeats):
        # The scanned rounds, many times slower, are measured once.
        measured = {sides[0]: jaxinv_rates(args, scanned=repeat == 0),
                    sides[1]: torch_rates(args, all_threads), sides[2]: torch_rates(args, 1)}
        scanned = measured[sides[0]].pop(SCANNED, scanned)
        for side, rates in measured.items():
            for method, rate in rates.items():
                best[method][side] = max(best[method][side], rate)
        print({m: {s: round(r) for s, r in b.items()} for m, b in best.items()}, flush=True)
    rows = []
    for method, rates in best.items():
        fastest = max(rate for side, rate in rates.items() if side != "jaxinv")
        rows.append((method, *(f"{rates[side]:,.0f}" for side in sides),
                     f"**{rates['jaxinv'] / fastest:.2f}×**"))
    body = "\n".join(section_header(
        "## DeepInversion and CMI synthesis speed (WRN-10-1, CPU)",
        command_line("benchmarks/bench_bn_inversion.py", argv), info) + [
        f"Batches of {args.batch_size} images of 32x32x3, {args.num_steps} steps per batch "
        f"(DeepInversion, {args.batches} batches) or per round (CMI, {args.rounds} rounds, "
        f"a fresh generator each and one student step after it). Image-steps per second, "
        f"best of {args.repeats}:", "",
        report.markdown_table(["method", *sides, "jaxinv / fastest PyTorch"], rows), "",
        f"On CPU jaxinv runs DeepInversion one jitted call per step and a CMI round as its "
        f"phases, one jitted call per step. The same CMI rounds as one scanned call each, as on "
        f"accelerators, reach {scanned:,.0f} image-steps per second here (one measurement): "
        f"{best['CMI']['jaxinv'] / scanned:.1f}× slower, because XLA:CPU runs convolutions "
        "inside a loop slowly (jax-ml/jax#12868)."])
    print(body)
    if args.write:
        report.update_markdown_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), SECTION, body)


if __name__ == "__main__":
    main()
