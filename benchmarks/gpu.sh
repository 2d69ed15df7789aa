#!/usr/bin/env bash
# GPU benchmark of Data Impressions synthesis on ResNet-34: jaxinv fp32/bf16 against eager and
# compiled PyTorch, and the chunk size at which jaxinv's throughput saturates.
#
# What it measures, and the wheels it needs (jax[cuda12]==0.10.2, i.e. jax-cuda12-plugin and
# jax-cuda12-pjrt 0.10.2 with their nvidia-* runtime wheels, and a CUDA build of torch), are
# in the docstring of benchmarks/bench_gpu.py. Nothing here downloads anything: install the
# wheels first (the GPU machine may have no network).
#
# Usage, from anywhere, on a machine with an NVIDIA GPU:
#
#   bash benchmarks/gpu.sh [extra bench_gpu.py options]
#
# Results go to $OUT if set, else ./gpu_results: gpu_bench.json (rewritten after every
# measurement), gpu_bench.log (everything printed) and versions.txt. The benchmark itself runs
# under `timeout 480` (8 minutes) and budgets itself to 420 s (--max_seconds); if it is cut
# short, the tables of what it measured are printed from the JSON.
#
# Environment: PYTHON (default python), CUDA_VISIBLE_DEVICES (default 0: both frameworks on
# the same, single GPU), NVIDIA_SMI (default nvidia-smi).

set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
NVIDIA_SMI="${NVIDIA_SMI:-nvidia-smi}"
RESULTS="${OUT:-./gpu_results}"

if ! command -v "$NVIDIA_SMI" >/dev/null 2>&1 || ! "$NVIDIA_SMI" -L >/dev/null 2>&1; then
    echo "gpu.sh: '$NVIDIA_SMI' is missing or finds no GPU: this benchmark needs an NVIDIA GPU" \
         "and its driver. For the seconds-scale check on the CPU run:" \
         "python benchmarks/bench_gpu.py --cpu --out cpu_check.json" >&2
    exit 2
fi

mkdir -p "$RESULTS" || exit 1
RESULTS="$(cd "$RESULTS" && pwd)"
cd "$REPO" || exit 1
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
# jax and PyTorch share the GPU: jax must not take 75% of its memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

{
    echo "date: $(date -Is)"
    echo "git: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    "$NVIDIA_SMI" --query-gpu=name,driver_version,memory.total --format=csv
    echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"
    # Package versions without importing them (importing jax would start the GPU client).
    "$PYTHON" - <<'EOF'
import importlib.metadata as metadata
import platform

print("python", platform.python_version())
names = ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "flax", "optax",
         "orbax-checkpoint", "torch", "triton", "nvidia-cudnn-cu12", "nvidia-cublas-cu12",
         "nvidia-cuda-runtime-cu12", "nvidia-cuda-nvcc-cu12", "nvidia-nccl-cu12")
for name in names:
    try:
        print(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(f"{name} (not installed)")
EOF
} 2>&1 | tee "$RESULTS/versions.txt"

timeout --kill-after=10 480 "$PYTHON" benchmarks/bench_gpu.py --out "$RESULTS/gpu_bench.json" \
    "$@" 2>&1 | tee "$RESULTS/gpu_bench.log"
status=${PIPESTATUS[0]}
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "gpu.sh: the benchmark was stopped after 480 s; what it measured:" \
        | tee -a "$RESULTS/gpu_bench.log"
    if [ -f "$RESULTS/gpu_bench.json" ]; then
        "$PYTHON" benchmarks/bench_gpu.py --report "$RESULTS/gpu_bench.json" 2>&1 \
            | tee -a "$RESULTS/gpu_bench.log"
    fi
fi
echo "gpu.sh: exit status $status; results in $RESULTS"
exit "$status"
