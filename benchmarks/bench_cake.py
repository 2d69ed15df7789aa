"""CAKE synthesis speed: jaxinv's engine against the authors' loop in PyTorch, LeNet-5 on CPU.

Both sides optimise the same objective on the same geometry: a frozen LeNet-5 teacher on
32x32x1 images, rows of 10 distinct classes, the CAKE loss (class, contrastive and TV terms
with the authors' MNIST weights), plain SGD on the pixels and a clamp to [0, 1]. PyTorch is
:class:`benchmarks.torch_reference.CakeBenchmark`, eager, one sample set at a time as the
authors' code runs; it is timed with all threads and with one, and the faster is kept. jaxinv is
:func:`jaxinv.synthesis.synthesize` end to end (chunk initialisation, the compiled steps, the
final logits and the Orbax writes) on ``--num_sets`` sets, after a warm-up that compiles the
same shapes. The two are interleaved ``--repeats`` times and the best of each kept.

    python benchmarks/bench_cake.py --rows 50 --num_sets 4 --num_steps 64 --repeats 3 [--write]

``--write`` replaces the ``cake_speed`` section of BENCHMARKS.md.
"""

# ruff: noqa: E402  (the path set-up below has to run before the jaxinv imports)

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import argparse
import functools
import tempfile

import numpy as np

from benchmarks.bench_synthesis import build_teacher, compare_with_eager_torch, timed
from jaxinv import report
from jaxinv.synthesis import synthesize
from jaxinv.synthesis.cake import cake_method, row_classes

SECTION = "cake_speed"
GROUP_SIZE = 10
ETA = 1e-3


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50, help="rows of 10 samples per set")
    parser.add_argument("--num_sets", type=int, default=4, help="sets jaxinv synthesises")
    parser.add_argument("--num_steps", type=int, default=64, help="steps per sample")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    return parser.parse_args(argv)


def jaxinv_rate(teacher, args) -> float:
    """Image-steps per second of `synthesize` on num_sets sets, compilation excluded."""
    method = cake_method(teacher, group_size=GROUP_SIZE, num_steps=args.num_steps)
    set_size = args.rows * GROUP_SIZE
    num = set_size * args.num_sets
    classes = row_classes(np.random.default_rng(args.seed), num // GROUP_SIZE, GROUP_SIZE,
                          10).reshape(-1)
    inputs = {"targets": np.eye(10, dtype=np.float32)[classes],
              "step_size": np.full(num, ETA, np.float32)}

    def run(count: int) -> None:
        with tempfile.TemporaryDirectory(prefix="bench_cake_") as workdir:
            synthesize(method, teacher, {k: v[:count] for k, v in inputs.items()},
                       seed=args.seed, workdir=workdir, chunk_size=set_size)

    run(set_size)  # compiles the chunk's shapes
    return num * args.num_steps / timed(lambda: run(num))


def torch_rate(args, threads: int) -> float:
    from benchmarks.torch_reference import CakeBenchmark

    bench = CakeBenchmark(args.rows, GROUP_SIZE, eta=ETA, seed=args.seed, num_threads=threads)
    bench.warm_up(3)
    return args.rows * GROUP_SIZE * args.num_steps / bench.seconds(args.num_steps)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    teacher = build_teacher(None, args.seed)
    body = compare_with_eager_torch(
        "## CAKE synthesis speed (LeNet-5, CPU)", "benchmarks/bench_cake.py", argv,
        f"Sample sets of {args.rows} rows × {GROUP_SIZE} classes, {args.num_steps} SGD steps per "
        f"sample; jaxinv end to end on {args.num_sets} sets.",
        functools.partial(jaxinv_rate, teacher, args), functools.partial(torch_rate, args),
        args.repeats)
    print(body)
    if args.write:
        report.update_markdown_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), SECTION, body)


if __name__ == "__main__":
    main()
