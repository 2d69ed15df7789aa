"""Peak resident memory of the Table 1 pipeline against the transfer-set size.

Runs `jaxinv run zskd.py:mnist` in a child process for several transfer-set sizes at the
config's chunk size (2,400), with short synthesis and distillation (the memory of a step does
not depend on how many steps run), and reports each child's peak resident set size. During
synthesis only one chunk's state lives on the device; the host keeps the finished chunks'
images and logits (N x 32 x 32 x 1 floats, 98 MB for Table 1's 24,000) until the TransferSet
is assembled, and distillation holds the transfer set.

  python benchmarks/bench_memory.py [--sizes 2400,9600,24000] [--write]

`--write` replaces the `memory` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.bench_synthesis import machine_info, section_header  # noqa: E402
from jaxinv import report  # noqa: E402

SECTION = "memory"


def peak_rss_mib(command: list[str]) -> float:
    """Peak resident set size (MiB) of the child that runs `command`."""
    child = subprocess.run([sys.executable, "-c", (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"), *command],
        check=True, capture_output=True, text=True, cwd=REPO)
    return int(child.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2400,9600,24000",
                        help="transfer-set sizes (multiples of 20)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rows = []
    workdir = tempfile.mkdtemp(prefix="jaxinv_memory_")
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            command = ["jaxinv", "run", "zskd.py:mnist", "--workdir",
                       os.path.join(workdir, str(size)),
                       f"--config.synthesis.num_per_class={size // 10}",
                       "--config.synthesis.num_steps=10", "--config.synthesis.steps_per_call=10",
                       "--config.distill.num_steps=100", "--config.distill.checkpoint_every=100",
                       "--config.distill.references=()"]
            rows.append((size, f"{peak_rss_mib(command):,.0f}"))
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    body = "\n".join([
        *section_header("## Peak memory of the Table 1 pipeline (zskd.py:mnist)",
                        f"python benchmarks/bench_memory.py --sizes {args.sizes}",
                        machine_info()),
        "Each row is one `jaxinv run zskd.py:mnist` with that many DIs at chunk size 2,400, "
        "10 synthesis and 100 distillation steps (a step's memory does not depend on the "
        "step count), the teacher from the store; the figure is the child's peak resident "
        "set size.", "",
        report.markdown_table(["Data Impressions", "peak RSS (MiB)"], rows)])
    report.publish_section(os.path.join(REPO, "BENCHMARKS.md"), SECTION, body, args.write)


if __name__ == "__main__":
    main()
