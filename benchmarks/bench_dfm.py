"""Data from Model's extraction speed: jaxinv's engine against a plain PyTorch l2-PGD loop,
LeNet-5 on CPU.

Both sides run the same extraction on the same geometry: a frozen LeNet-5 on 32x32x1 images,
images starting at background images, virtual-logit targets, l2-PGD steps on ‖T(x) − Z_v‖₂
with projection onto the ε-ball around the background and onto [0, 1]. PyTorch is
:class:`benchmarks.torch_reference.DfmBenchmark`, eager, one batch at a time; it is timed with
all threads and with one, and the faster is kept. jaxinv is
:func:`jaxinv.synthesis.synthesize` end to end (chunk initialisation, the compiled steps, the
final logits and the Orbax writes) on ``--num_chunks`` chunks after a warm-up that compiles
the same shapes. The two are interleaved ``--repeats`` times and the best of each kept. The
wall time of a whole chain link (extraction, DtM training and scoring) is in each chain's
results (`links[i].seconds`, BENCHMARKS.md's Data from Model section).

    python benchmarks/bench_dfm.py --chunk_size 1000 --num_chunks 3 --num_steps 50 [--write]

``--write`` replaces the ``dfm_speed`` section of BENCHMARKS.md.
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
from jaxinv.synthesis.dfm import dfm_method, virtual_logits

SECTION = "dfm_speed"
EPSILON = 3.0 * 32 / 28


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunk_size", type=int, default=1000)
    parser.add_argument("--num_chunks", type=int, default=3)
    parser.add_argument("--num_steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    return parser.parse_args(argv)


def jaxinv_rate(teacher, args) -> float:
    """Image-steps per second of `synthesize` on num_chunks chunks, compilation excluded."""
    method = dfm_method(teacher, epsilon=EPSILON, num_steps=args.num_steps)
    num = args.chunk_size * args.num_chunks
    rng = np.random.default_rng(args.seed)
    targets, _ = virtual_logits(rng, num, 10)
    inputs = {"targets": targets,
              "background": rng.uniform(size=(num, 32, 32, 1)).astype(np.float32)}

    def run(count: int) -> None:
        with tempfile.TemporaryDirectory(prefix="bench_dfm_") as workdir:
            synthesize(method, teacher, {k: v[:count] for k, v in inputs.items()},
                       seed=args.seed, workdir=workdir, chunk_size=args.chunk_size)

    run(args.chunk_size)  # compiles the chunk's shapes
    return num * args.num_steps / timed(functools.partial(run, num))


def torch_rate(args, threads: int) -> float:
    from benchmarks.torch_reference import DfmBenchmark

    bench = DfmBenchmark(args.chunk_size, epsilon=EPSILON,
                         step_size=2.5 * EPSILON / args.num_steps, seed=args.seed,
                         num_threads=threads)
    bench.warm_up(3)
    return args.chunk_size * args.num_steps / bench.seconds(args.num_steps)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    teacher = build_teacher(None, args.seed)
    body = compare_with_eager_torch(
        "## Data from Model extraction speed (LeNet-5, CPU)", "benchmarks/bench_dfm.py", argv,
        f"Chunks of {args.chunk_size} images, {args.num_steps} l2-PGD steps (ε = "
        f"{EPSILON:.2f}); jaxinv end to end on {args.num_chunks} chunks, PyTorch's bare loop "
        "on one batch of the chunk's size.",
        functools.partial(jaxinv_rate, teacher, args), functools.partial(torch_rate, args),
        args.repeats)
    print(body)
    if args.write:
        report.update_markdown_section(os.path.join(REPO_ROOT, "BENCHMARKS.md"), SECTION, body)


if __name__ == "__main__":
    main()
