"""Data Impressions synthesis speed on one GPU: jaxinv against eager and compiled PyTorch.

What one run measures, on ResNet-34 (CIFAR shapes, ``jaxinv.models.get_model("resnet34")``,
32x32x3 images, 21.3M parameters, random weights: they do not change the work):

1. jaxinv's compiled step loop (``engine._run_steps``, as :func:`jaxinv.synthesis.synthesize`
   calls it) at ``--chunk_size``, in fp32 and in bf16;
2. eager PyTorch at the same batch, fp32 and bf16 (``torch.autocast``);
3. jaxinv end to end (``synthesize`` on a fresh workdir: chunk init, the scan, the final
   logits, the Orbax writes), fp32 and bf16, after a warm-up run that compiles the shapes;
4. ``torch.compile``-d PyTorch (``--torch_compile_backend``, inductor on a GPU), fp32 and bf16;
5. a chunk-size sweep (``--sizes``, default 128..4096 doubling; the headline size is not
   measured twice) of jaxinv fp32 and bf16 and eager PyTorch fp32 and bf16: each series
   stops at the first size whose throughput rises by less than 5% over the best smaller
   size, and that best size is reported as the size at which throughput saturates.

Everything runs in this order under one time budget (``--max_seconds``, 420 s by default, so
that ``benchmarks/gpu.sh``'s ``timeout 480`` is not reached): a measurement whose estimated
cost does not fit in what is left is recorded as skipped, with the reason (``torch.compile``
starts only with ``--torch_compile_reserve`` seconds left; jaxinv compiles every new chunk
size anew, so the sweep is the part that a short budget cuts), and the JSON (``--out``) is
rewritten after every measurement, so a run killed part way keeps what it measured. The
markdown tables go to stdout at the end; ``--report JSON`` prints them from a saved JSON.

The objective is the one of ``benchmarks/bench_synthesis.py``: CE(y, softmax(T(x)/20)) to
Dirichlet targets y, Adam (lr 0.05, constant) on pixels initialised uniform in [0, 1], a clip
to [0, 1] after every step, the teacher in inference mode (BatchNorm running statistics).
Throughput is image-steps/s (chunk size x steps / seconds), best of ``--repeats`` timed calls
of ``--num_steps`` steps each; compilation is excluded and reported on its own.

bf16, stated plainly:

- jaxinv: the teacher's variables are cast to bfloat16 once, the images are cast to bfloat16
  on entry and every ``nn.Conv``/``nn.Dense`` input is cast to bfloat16 by a flax method
  interceptor (the model's input standardisation divides by fp32 constants, which would
  promote everything after it back to fp32); the logits are cast back to fp32 for the loss.
  The pixels, their gradients and the Adam state stay fp32. See :class:`Bf16Teacher`.
- PyTorch: fp32 weights and pixels, the forward pass under
  ``torch.autocast(dtype=torch.bfloat16)``, the loss in fp32.

fp32 convolutions use each framework's default precision on the GPU (both allow TF32 for
convolutions by default on Ampere and later; the settings are recorded in the JSON). The
PyTorch model is the same ResNet-34 (:func:`torch_cifar_resnet`; its parameter count is
checked against jaxinv's), in channels-last memory format, which is PyTorch's faster layout for
convolutions on tensor cores. jaxinv is limited to one device (``CUDA_VISIBLE_DEVICES``
defaults to 0) so that both frameworks use the same GPU.

Requirements on the GPU machine (it may have no network: nothing here downloads anything, so
install the wheels first, e.g. ``pip download -d wheels <the list below>`` on a machine with
network, then ``pip install --no-index --find-links wheels <the list below>`` on the GPU one):

- this repository, installed (``pip install -e .``), with its pinned jax 0.10.2 and flax;
- jax's CUDA 12 plugin matching jax 0.10.2: ``jax[cuda12]==0.10.2``, i.e.
  ``jax-cuda12-plugin[with-cuda]==0.10.2`` and ``jax-cuda12-pjrt==0.10.2``, together with the
  NVIDIA runtime wheels that extra pulls in (nvidia-cublas-cu12, nvidia-cuda-cupti-cu12,
  nvidia-cuda-nvcc-cu12, nvidia-cuda-runtime-cu12, nvidia-cudnn-cu12, nvidia-cufft-cu12,
  nvidia-cusolver-cu12, nvidia-cusparse-cu12, nvidia-nccl-cu12, nvidia-nvjitlink-cu12; let pip
  resolve the exact set) and an NVIDIA driver recent enough for CUDA 12;
- a CUDA 12 build of PyTorch (e.g. ``torch==2.13.0`` from PyTorch's cu12x wheel index), which
  brings ``triton`` (needed by ``torch.compile``'s inductor backend) and its own nvidia-*
  wheels; install it before ``jax[cuda12]`` and check ``pip check``. Without torch the
  PyTorch rows are recorded as skipped, with the reason, and the jaxinv rows still run.

Run on the GPU machine, from the repository root::

    bash benchmarks/gpu.sh                       # writes $OUT/ or ./gpu_results/
    python benchmarks/bench_gpu.py --out gpu.json  # the same, without the wrapper's checks

``--cpu`` shrinks everything to seconds on the CPU (a ResNet-18 of widths 8..64, chunks of 8
and 16, two steps, ``torch.compile`` with the ``aot_eager`` backend, which traces the model as
inductor would but generates no code): it checks that the script works, and its numbers mean
nothing. ``tests/test_bench_gpu.py`` runs it.
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
import dataclasses
import datetime
import json
import platform
import time
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_synthesis import (
    LEARNING_RATE,
    TEMPERATURE,
    command_line,
    cpu_model,
    di_method,
    dirichlet_targets,
    run_engine,
    step_loop_fn,
    timed,
)
from jaxinv import models, report
from jaxinv.teacher import Teacher, from_module

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
# A series of the sweep has saturated once doubling the chunk raises throughput by less.
SATURATION_GAIN = 1.05
PRECISIONS = ("fp32", "bf16")
# Untimed steps that PyTorch runs first (allocator and cuDNN warm-up; compilation if compiled).
TORCH_WARMUP_STEPS = 3

# Settings per mode; any of them can be overridden on the command line.
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "gpu": dict(model="resnet34", widths=None, chunk_size=512, num_steps=20, repeats=3,
                num_chunks=4, sizes="128,256,512,1024,2048,4096", max_seconds=420.0,
                torch_compile_backend="inductor", torch_compile_reserve=150.0),
    "cpu": dict(model="resnet18", widths="8,16,32,64", chunk_size=8, num_steps=2, repeats=1,
                num_chunks=2, sizes="8,16", max_seconds=60.0,
                torch_compile_backend="aot_eager", torch_compile_reserve=10.0),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; unset ones take the `--cpu` or GPU mode's defaults."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true",
                        help="seconds-scale smoke run on the CPU (tiny ResNet-18); numbers are "
                             "meaningless, it checks that the script works")
    parser.add_argument("--out", type=str, default=None,
                        help="JSON results path (rewritten after every measurement)")
    parser.add_argument("--max_seconds", type=float, default=None,
                        help="time budget of the whole run (GPU 420, CPU 60)")
    parser.add_argument("--model", type=str, default=None,
                        help="a jaxinv CIFAR ResNet name (GPU resnet34, CPU resnet18)")
    parser.add_argument("--widths", type=str, default=None,
                        help="comma-separated channels per stage (default: the model's own; "
                             "CPU 8,16,32,64)")
    parser.add_argument("--chunk_size", type=int, default=None,
                        help="examples per chunk (PyTorch batch) of the headline rows")
    parser.add_argument("--num_steps", type=int, default=None, help="steps per timed call")
    parser.add_argument("--repeats", type=int, default=None, help="best of this many calls")
    parser.add_argument("--num_chunks", type=int, default=None,
                        help="chunks of the end-to-end `synthesize` run")
    parser.add_argument("--sizes", type=str, default=None,
                        help="comma-separated chunk sizes of the sweep, increasing ('' skips it)")
    parser.add_argument("--torch_compile_backend", type=str, default=None,
                        help="torch.compile backend (GPU inductor, CPU aot_eager)")
    parser.add_argument("--torch_compile_reserve", type=float, default=None,
                        help="seconds that must be left to start a torch.compile measurement")
    parser.add_argument("--torch_compile_mode", type=str, default="default",
                        help="torch.compile mode (default, reduce-overhead, max-autotune)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=str, default=None, metavar="JSON",
                        help="only print the markdown tables of an earlier run's JSON (e.g. "
                             "of one cut short by gpu.sh's timeout) and exit")
    args = parser.parse_args(argv)
    for key, value in MODE_DEFAULTS["cpu" if args.cpu else "gpu"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for name in ("chunk_size", "num_steps", "repeats", "num_chunks"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    try:
        args.size_list = [int(size) for size in args.sizes.split(",") if size.strip()]
        args.width_list = (None if not args.widths
                           else tuple(int(width) for width in args.widths.split(",")))
    except ValueError as err:
        parser.error(f"--sizes and --widths take comma-separated whole numbers: {err}")
    if args.size_list != sorted(set(args.size_list)) or any(s < 1 for s in args.size_list):
        parser.error(f"--sizes must increase and be >= 1, got {args.sizes!r}")
    if not args.model.startswith("resnet") or args.model not in models.MODEL_NAMES:
        parser.error(f"--model must be one of jaxinv's CIFAR ResNets, got {args.model!r}")
    return args


# ---------------------------------------------------------------------------------------------
# Time budget and results.


@dataclasses.dataclass
class Budget:
    """Seconds left of `--max_seconds`, counted from the start of the run."""
    max_seconds: float
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.max_seconds - (time.perf_counter() - self.start)

    def refuse(self, estimate: float) -> str | None:
        """Why a measurement estimated to take `estimate` s cannot start, or None if it can."""
        left = self.left()
        if estimate > left:
            return (f"time budget: about {estimate:.0f} s needed, {max(left, 0):.0f} s left of "
                    f"--max_seconds {self.max_seconds:g}")
        return None


class Results:
    """The JSON record of a run, rewritten to `path` after every change."""

    def __init__(self, path: str | None, header: dict[str, Any]):
        self.path = path
        self.data: dict[str, Any] = {**header, "results": {}, "sweep": {}}
        self.write()

    def write(self) -> None:
        if not self.path:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=2)
        os.replace(tmp, self.path)

    def set(self, key: str, value: dict[str, Any]) -> None:
        self.data["results"][key] = value
        self.write()
        print(f"  {key}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()), flush=True)


def _fmt(value: Any) -> str:
    return f"{value:,.1f}" if isinstance(value, float) else str(value)


def skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason}


def failed(err: BaseException) -> dict[str, Any]:
    """A measurement that raised (e.g. out of memory): the error's first line, run goes on."""
    traceback.print_exc()
    message = (str(err).strip().splitlines() or [""])[0][:500]
    return {"status": "failed", "reason": f"{type(err).__name__}: {message}"}


# ---------------------------------------------------------------------------------------------
# jaxinv side.


def _cast_inputs_to_bf16(next_fun, args, kwargs, context):
    """Flax interceptor: every Conv and Dense computes on bfloat16 inputs."""
    if isinstance(context.module, nn.Conv | nn.Dense) and context.method_name == "__call__":
        args = (args[0].astype(jnp.bfloat16), *args[1:])
    return next_fun(*args, **kwargs)


# eq=False, as Teacher: hashed by identity, so it can be a static jit argument.
@dataclasses.dataclass(frozen=True, eq=False)
class Bf16Teacher(Teacher):
    """A Teacher that runs its model in bfloat16 and returns fp32 logits.

    Build it with :func:`bf16_teacher`, which casts the variables to bfloat16 once. Inside,
    the images are cast to bfloat16 and every Conv/Dense input is cast again after the fp32
    input standardisation; gradients flow back to fp32 pixels through the casts.
    """

    def logits(self, images: jax.Array, variables: dict | None = None) -> jax.Array:
        variables = self.variables if variables is None else variables
        with nn.intercept_methods(_cast_inputs_to_bf16):
            logits = self._apply(variables, images.astype(jnp.bfloat16))
        return logits.astype(jnp.float32)


def bf16_teacher(teacher: Teacher) -> Bf16Teacher:
    """`teacher` with bfloat16 variables and a bfloat16 forward pass."""
    variables = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), teacher.variables)
    return Bf16Teacher(model=teacher.model, variables=variables,
                       image_shape=teacher.image_shape, dataset=teacher.dataset,
                       head_name=teacher.head_name)


def build_teacher(args: argparse.Namespace) -> Teacher:
    """The fp32 teacher: `args.model` (widths overridden in CPU mode), random init."""
    kwargs = {} if args.width_list is None else {"widths": args.width_list}
    model = models.get_model(args.model, num_classes=NUM_CLASSES, **kwargs)
    return from_module(model, random_variables(model, args.seed), IMAGE_SHAPE)


def random_variables(model: nn.Module, seed: int) -> dict:
    """He-normal kernels, unit BatchNorm scales and variances, zero biases and means.

    Drawn with numpy into the shapes of `models.init_variables`: compiling flax's own
    initialisers takes 10-20 s on a loaded CPU, and the weights do not change the work done.
    """
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0),
                                                          IMAGE_SHAPE))

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return rng.normal(0.0, np.sqrt(2.0 / fan_in), leaf.shape).astype(leaf.dtype)
        if name in ("scale", "var"):
            return np.ones(leaf.shape, leaf.dtype)
        return np.zeros(leaf.shape, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


class JaxSide:
    """jaxinv's step loop at any chunk size, per precision, with the DI method of each."""

    def __init__(self, args: argparse.Namespace, teacher: Teacher):
        self.args = args
        self.teachers = {"fp32": teacher, "bf16": bf16_teacher(teacher)}
        # One method object per precision, so the jit caches of the step loop and of
        # `synthesize` (keyed on the method and num_steps) are shared.
        self.methods = {p: di_method(t, args.num_steps) for p, t in self.teachers.items()}
        self.last: dict[str, dict[str, float]] = {}  # per precision: size, compile, call s

    def estimate(self, precision: str, size: int) -> float:
        """Seconds a step-loop measurement at `size` should take, from the last one."""
        last = self.last.get(precision)
        if last is None:
            return 0.0
        call = last["call_seconds"] * size / last["size"]
        return 1.2 * last["compile_seconds"] + (1 + self.args.repeats) * call

    def engine_estimate(self, precision: str) -> float:
        """Seconds the end-to-end measurement should take: its chunks and the warm-up's."""
        last = self.last.get(precision)
        if last is None:
            return 0.0
        chunks = 2 * self.args.num_chunks + 1  # the warm-up's chunk, then the timed run
        return chunks * last["call_seconds"] * self.args.chunk_size / last["size"]

    def step_loop(self, precision: str, size: int) -> dict[str, Any]:
        """Best-of-repeats throughput of `num_steps` compiled steps on one chunk of `size`."""
        args = self.args
        run = step_loop_fn(self.methods[precision], self.teachers[precision], args.num_steps,
                           size, args.seed)
        first = run()  # compiles this shape
        calls = [run() for _ in range(args.repeats)]
        best = min(calls)
        self.last[precision] = {"size": size, "compile_seconds": max(first - best, 0.0),
                                "call_seconds": best}
        return {"status": "ok", "image_steps_per_s": size * args.num_steps / best,
                "chunk_size": size, "num_steps": args.num_steps,
                "compile_seconds": max(first - best, 0.0), "best_call_seconds": best}

    def engine(self, precision: str) -> dict[str, Any]:
        """`synthesize` end to end on `num_chunks` chunks, after a one-chunk warm-up run."""
        args = self.args
        method, teacher = self.methods[precision], self.teachers[precision]
        targets = dirichlet_targets(args.num_chunks * args.chunk_size, args.seed)
        first = timed(lambda: run_engine(method, teacher, targets[:args.chunk_size],
                                         args.chunk_size, args.seed))
        seconds = timed(lambda: run_engine(method, teacher, targets, args.chunk_size,
                                           args.seed))
        return {"status": "ok", "image_steps_per_s": len(targets) * args.num_steps / seconds,
                "chunk_size": args.chunk_size, "num_chunks": args.num_chunks,
                "num_steps": args.num_steps, "seconds": seconds,
                "warmup_seconds": first}


# ---------------------------------------------------------------------------------------------
# PyTorch side.


def import_torch() -> tuple[ModuleType | None, str]:
    """(torch, "") or (None, why it cannot be used)."""
    try:
        import torch
    except Exception as err:  # ImportError, or a broken CUDA install failing at import
        return None, f"torch is not importable: {type(err).__name__}: {err}"
    return torch, ""


def torch_cifar_resnet(torch: ModuleType, stage_sizes: Sequence[int], widths: Sequence[int],
                       num_classes: int, mean: Sequence[float], std: Sequence[float]):
    """PyTorch twin of `jaxinv.models.CifarResNet`: the same layers, shapes and parameters.

    3x3 stem with BatchNorm, stages of BasicBlocks (the first of every stage after the first
    halves the resolution; shortcut a 1x1 conv with BatchNorm where the shape changes), global
    average pooling and a linear head, on inputs standardised with `mean` and `std`.
    """
    tnn, functional = torch.nn, torch.nn.functional

    class Block(tnn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False),
                                               tnn.BatchNorm2d(cout))

        def forward(self, x):
            y = functional.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return functional.relu(y + (x if self.shortcut is None else self.shortcut(x)))

    class ResNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
            self.stem_conv = tnn.Conv2d(len(mean), widths[0], 3, 1, 1, bias=False)
            self.stem_bn = tnn.BatchNorm2d(widths[0])
            blocks, cin = [], widths[0]
            self.jax_block_names = []  # flax's name of each block, for `load_jax_variables`
            for stage, (num_blocks, cout) in enumerate(zip(stage_sizes, widths, strict=True)):
                for block in range(num_blocks):
                    blocks.append(Block(cin, cout, 2 if stage > 0 and block == 0 else 1))
                    self.jax_block_names.append(f"stage{stage + 1}_block{block + 1}")
                    cin = cout
            self.blocks = tnn.Sequential(*blocks)
            self.head = tnn.Linear(cin, num_classes)

        def forward(self, images):
            x = (images - self.mean) / self.std
            x = functional.relu(self.stem_bn(self.stem_conv(x)))
            return self.head(self.blocks(x).mean(dim=(2, 3)))

    return ResNet()


def load_jax_variables(torch: ModuleType, model, variables: dict) -> None:
    """Copies jaxinv `CifarResNet` variables into its :func:`torch_cifar_resnet` twin."""
    params, stats = variables["params"], variables["batch_stats"]

    def tensor(x, *permutation):
        x = torch.as_tensor(np.asarray(x, np.float32))
        return x.permute(*permutation).contiguous() if permutation else x

    def conv(layer, name, source=params):
        layer.weight.copy_(tensor(source[name]["kernel"], 3, 2, 0, 1))  # HWIO -> OIHW

    def bn(layer, name, source=params, source_stats=stats):
        layer.weight.copy_(tensor(source[name]["scale"]))
        layer.bias.copy_(tensor(source[name]["bias"]))
        layer.running_mean.copy_(tensor(source_stats[name]["mean"]))
        layer.running_var.copy_(tensor(source_stats[name]["var"]))

    with torch.no_grad():
        conv(model.stem_conv, "stem_conv")
        bn(model.stem_bn, "stem_bn")
        for block, name in zip(model.blocks, model.jax_block_names, strict=True):
            for layer in ("conv1", "conv2"):
                conv(getattr(block, layer), layer, params[name])
            for layer in ("bn1", "bn2"):
                bn(getattr(block, layer), layer, params[name], stats[name])
            if block.shortcut is not None:
                conv(block.shortcut[0], "shortcut_conv", params[name])
                bn(block.shortcut[1], "shortcut_bn", params[name], stats[name])
        model.head.weight.copy_(tensor(params["head"]["kernel"], 1, 0))
        model.head.bias.copy_(tensor(params["head"]["bias"]))


class TorchSide:
    """PyTorch DI steps on the same ResNet and chunk sizes: eager or compiled, fp32 or bf16."""

    def __init__(self, torch: ModuleType, args: argparse.Namespace, teacher: Teacher):
        self.torch, self.args = torch, args
        if args.cpu:
            # One thread: eager PyTorch's OpenMP threads wait on each other at every op, which
            # on a shared CPU turns a seconds-scale check into minutes.
            torch.set_num_threads(1)
        self.device = torch.device("cpu" if args.cpu or not torch.cuda.is_available()
                                   else "cuda")
        module = teacher.model
        torch.manual_seed(args.seed)
        model = torch_cifar_resnet(torch, module.stage_sizes, module.widths, NUM_CLASSES,
                                   module.mean, module.std)
        num_params = sum(p.numel() for p in model.parameters())
        jax_params = models.count_params(teacher.variables["params"])
        if num_params != jax_params:
            raise RuntimeError(f"the PyTorch model has {num_params} parameters, jaxinv's "
                               f"{jax_params}: they are not the same network")
        self.num_params = num_params
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)  # frozen teacher: only the pixels get gradients
        # The same weights as jaxinv's teacher, and a check, in fp32 on the CPU, that the two
        # networks compute the same logits.
        load_jax_variables(torch, model, teacher.variables)
        images = np.random.default_rng(args.seed).uniform(size=(2, *IMAGE_SHAPE))
        images = images.astype(np.float32)
        # jaxinv's side on the CPU too: on a GPU both frameworks may use TF32 convolutions.
        cpu = jax.devices("cpu")[0]
        expected = np.asarray(jax.jit(teacher.logits)(
            jax.device_put(images, cpu), jax.device_put(teacher.variables, cpu)))
        with torch.no_grad():
            got = model(torch.as_tensor(images).permute(0, 3, 1, 2)).numpy()
        self.logit_difference = float(np.abs(got - expected).max() / np.abs(expected).max())
        if not self.logit_difference < 1e-4:
            raise RuntimeError(f"the PyTorch model's logits differ from jaxinv's by "
                               f"{self.logit_difference:.2g} of their scale with the same "
                               "weights: they are not the same network")
        self.model = model.to(self.device, memory_format=torch.channels_last)
        self.last: dict[str, dict[str, float]] = {}

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def estimate(self, key: str, size: int) -> float:
        last = self.last.get(key)
        if last is None:
            return 0.0
        return (TORCH_WARMUP_STEPS / self.args.num_steps + self.args.repeats) * (
            last["call_seconds"] * size / last["size"])

    def measure(self, precision: str, size: int, compiled: bool) -> dict[str, Any]:
        """Best-of-repeats throughput of `num_steps` DI steps on a batch of `size`."""
        try:
            return self._measure(precision, size, compiled)
        finally:
            if self.device.type == "cuda":
                self.torch.cuda.empty_cache()  # leave the memory to jaxinv's next measurement

    def _measure(self, precision: str, size: int, compiled: bool) -> dict[str, Any]:
        torch, args = self.torch, self.args
        functional = torch.nn.functional
        height, width, channels = IMAGE_SHAPE
        targets = torch.as_tensor(dirichlet_targets(size, args.seed), device=self.device)
        x = torch.rand(size, channels, height, width, device=self.device)
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=LEARNING_RATE)
        model, bf16 = self.model, precision == "bf16"

        def loss_fn(x):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
            log_probs = functional.log_softmax(logits.float() / TEMPERATURE, dim=1)
            return -(targets * log_probs).sum(dim=1).mean()

        if compiled:
            torch._dynamo.reset()  # a fresh compile per measurement, timed as such
            mode = None if args.torch_compile_mode == "default" else args.torch_compile_mode
            loss_fn = torch.compile(loss_fn, backend=args.torch_compile_backend, mode=mode)

        def steps(num: int) -> None:
            for _ in range(num):
                optimizer.zero_grad(set_to_none=True)
                loss_fn(x).backward()
                optimizer.step()
                with torch.no_grad():
                    x.clamp_(0.0, 1.0)
            self.sync()

        warmup = timed(lambda: steps(TORCH_WARMUP_STEPS))
        best = min(timed(lambda: steps(args.num_steps)) for _ in range(args.repeats))
        key = f"{'compiled' if compiled else 'eager'}_{precision}"
        self.last[key] = {"size": size, "call_seconds": best}
        result = {"status": "ok", "image_steps_per_s": size * args.num_steps / best,
                  "chunk_size": size, "num_steps": args.num_steps, "best_call_seconds": best,
                  "warmup_seconds": warmup}
        if compiled:
            result["backend"] = args.torch_compile_backend
            result["mode"] = args.torch_compile_mode
            result["compile_seconds"] = max(
                warmup - TORCH_WARMUP_STEPS * best / args.num_steps, 0.0)
        return result


# ---------------------------------------------------------------------------------------------
# The run.


def machine_info(args: argparse.Namespace, torch: ModuleType | None) -> dict[str, str]:
    """What the numbers depend on."""
    devices = jax.devices()
    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": f"{cpu_model()}, nproc {os.cpu_count()}",
        "python": platform.python_version(),
        "jax": f"{jax.__version__}, backend {jax.default_backend()}, {len(devices)} device(s): "
               f"{devices[0].device_kind}; flax {flax.__version__}",
        "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") or "(unset)",
        "XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE",
                                                        "(unset)"),
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)"),
    }
    if torch is not None:
        info["torch"] = f"{torch.__version__}, CUDA {torch.version.cuda}"
        if torch.cuda.is_available():
            info["torch_gpu"] = torch.cuda.get_device_name(0)
            info["torch_cudnn"] = str(torch.backends.cudnn.version())
            info["torch_tf32"] = (f"cudnn {torch.backends.cudnn.allow_tf32}, "
                                  f"matmul {torch.backends.cuda.matmul.allow_tf32}")
        else:
            info["torch_threads"] = str(torch.get_num_threads())
    return info


def run_guarded(results: Results, key: str, measure: Callable[[], dict[str, Any]],
                refusal: str | None) -> dict[str, Any]:
    """Runs `measure` unless refused; records its result, a skip or a failure under `key`."""
    if refusal:
        value = skipped(refusal)
    else:
        try:
            value = measure()
        except Exception as err:  # out of memory, a compiler error: record it and go on
            value = failed(err)
    results.set(key, value)
    return value


def headline(args: argparse.Namespace, budget: Budget, results: Results, jax_side: JaxSide,
             torch_side: TorchSide | None, torch_reason: str) -> None:
    """Steps 1-4 of the module docstring, in that order, at `args.chunk_size`."""
    size = args.chunk_size
    for precision in PRECISIONS:
        run_guarded(results, f"jaxinv_{precision}",
                    lambda p=precision: jax_side.step_loop(p, size), None)
    for precision in PRECISIONS:
        key = f"torch_eager_{precision}"
        if torch_side is None:
            results.set(key, skipped(torch_reason))
            continue
        run_guarded(results, key, lambda p=precision: torch_side.measure(p, size, False),
                    budget.refuse(0.0))
    for precision in PRECISIONS:
        run_guarded(results, f"jaxinv_engine_{precision}",
                    lambda p=precision: jax_side.engine(p),
                    budget.refuse(jax_side.engine_estimate(precision)))
    for precision in PRECISIONS:
        key = f"torch_compiled_{precision}"
        if torch_side is None:
            results.set(key, skipped(torch_reason))
            continue
        run_guarded(results, key, lambda p=precision: torch_side.measure(p, size, True),
                    budget.refuse(args.torch_compile_reserve))


def saturation(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Where a series stops gaining: the size before the first < 5% gain, or why unknown."""
    best = None
    for point in points:
        if best is not None and point["image_steps_per_s"] < SATURATION_GAIN * best[
                "image_steps_per_s"]:
            return {"chunk_size": best["chunk_size"],
                    "image_steps_per_s": best["image_steps_per_s"],
                    "reason": f"doubling to {point['chunk_size']} gained < "
                              f"{100 * (SATURATION_GAIN - 1):.0f}%"}
        if best is None or point["image_steps_per_s"] > best["image_steps_per_s"]:
            best = point
    return {"chunk_size": None, "reason": "still rising at the largest size measured"
            if points else "no size measured"}


SWEEP_KEYS = ("chunk_size", "image_steps_per_s", "best_call_seconds")


def _check_saturation(record: dict[str, Any], name: str) -> None:
    """Stops series `name` of a sweep record once it has saturated."""
    found = saturation(record["series"][name])
    record["saturation"][name] = found
    if found["chunk_size"] is not None:
        record["stopped"][name] = f"saturated: {found['reason']}"


def sweep(args: argparse.Namespace, budget: Budget, results: Results, jax_side: JaxSide,
          torch_side: TorchSide | None, torch_reason: str) -> None:
    """Step 5 of the module docstring: every series until it saturates, fails or time is up."""
    series: dict[str, list[dict[str, Any]]] = {f"jaxinv_{p}": [] for p in PRECISIONS}
    measures: dict[str, tuple[Callable[[int], dict], Callable[[int], float]]] = {
        f"jaxinv_{p}": (lambda s, p=p: jax_side.step_loop(p, s),
                        lambda s, p=p: jax_side.estimate(p, s)) for p in PRECISIONS}
    if torch_side is not None:
        for p in PRECISIONS:
            series[f"torch_eager_{p}"] = []
            measures[f"torch_eager_{p}"] = (lambda s, p=p: torch_side.measure(p, s, False),
                                            lambda s, p=p: torch_side.estimate(f"eager_{p}", s))
    record = {"sizes": args.size_list, "series": series, "stopped": {}, "saturation": {}}
    if torch_side is None:
        record["stopped"].update({f"torch_eager_{p}": torch_reason for p in PRECISIONS})
    results.data["sweep"] = record
    for size in args.size_list:
        for name, (measure, estimate) in measures.items():
            if name in record["stopped"]:
                continue
            headline_point = results.data["results"].get(name, {})
            if headline_point.get("status") == "ok" and headline_point["chunk_size"] == size:
                # Measured already, with the same settings, by the headline step.
                series[name].append({k: headline_point[k] for k in SWEEP_KEYS})
                _check_saturation(record, name)
                continue
            refusal = budget.refuse(estimate(size))
            if refusal:
                record["stopped"][name] = f"at chunk size {size}: {refusal}"
                continue
            try:
                point = measure(size)
            except Exception as err:
                record["stopped"][name] = f"at chunk size {size}: {failed(err)['reason']}"
                continue
            series[name].append({k: point[k] for k in SWEEP_KEYS})
            print(f"  sweep {name} {size}: {point['image_steps_per_s']:,.0f} image-steps/s",
                  flush=True)
            _check_saturation(record, name)
            results.write()
    for name, points in series.items():
        record["saturation"][name] = saturation(points)
        record["stopped"].setdefault(name, "every size measured")
    results.write()


# ---------------------------------------------------------------------------------------------
# Output.


ROW_LABELS = {
    "jaxinv": "jaxinv compiled step loop (`engine._run_steps`)",
    "jaxinv_engine": "jaxinv `synthesize` end to end",
    "torch_eager": "PyTorch eager",
    "torch_compiled": "PyTorch `torch.compile`",
}


def markdown(data: dict[str, Any]) -> str:
    """The headline table, the ratios and the sweep table of a results record."""
    res = data["results"]
    s = data["settings"]

    def rate(key: str) -> float | None:
        row = res.get(key, {})
        return row.get("image_steps_per_s") if row.get("status") == "ok" else None

    rows = []
    for prefix, label in ROW_LABELS.items():
        for precision in PRECISIONS:
            row = res.get(f"{prefix}_{precision}", {})
            if row.get("status") == "ok":
                compile_s = row.get("compile_seconds")
                rows.append([label, precision, row["chunk_size"],
                             f"{row['image_steps_per_s']:,.0f}",
                             "" if compile_s is None else f"{compile_s:.1f}", ""])
            else:
                rows.append([label, precision, s["chunk_size"], "", "",
                             f"{row.get('status', 'not run')}: {row.get('reason', '')}"])
    lines = [
        f"DI synthesis, {s['model']} on {tuple(s['image_shape'])} images, {s['num_steps']} "
        f"steps per timed call, best of {s['repeats']}; jax {data['machine']['jax']}.",
        "",
        report.markdown_table(["measurement", "precision", "chunk", "image-steps/s",
                               "compile s", "note"], rows),
        "",
    ]
    ratios = [("jaxinv bf16 / jaxinv fp32", "jaxinv_bf16", "jaxinv_fp32")]
    for precision in PRECISIONS:
        ratios += [(f"jaxinv / PyTorch eager, {precision}", f"jaxinv_{precision}",
                    f"torch_eager_{precision}"),
                   (f"jaxinv / PyTorch compiled, {precision}", f"jaxinv_{precision}",
                    f"torch_compiled_{precision}")]
    for label, num, den in ratios:
        if rate(num) and rate(den):
            lines.append(f"- {label}: {rate(num) / rate(den):.2f}x")
    record = data.get("sweep") or {}
    if record.get("series"):
        names = list(record["series"])
        by_size = {name: {p["chunk_size"]: p["image_steps_per_s"]
                          for p in record["series"][name]} for name in names}
        table = [[size, *(f"{by_size[n][size]:,.0f}" if size in by_size[n] else ""
                          for n in names)]
                 for size in record["sizes"] if any(size in by_size[n] for n in names)]
        lines += ["", "Chunk-size sweep (image-steps/s):", "",
                  report.markdown_table(["chunk", *names], table), ""]
        for name in names:
            sat = record["saturation"].get(name, {})
            where = (f"saturates at {sat['chunk_size']}" if sat.get("chunk_size")
                     else "no saturation found")
            lines.append(f"- {name}: {where} ({sat.get('reason', '')}); "
                         f"stopped: {record['stopped'].get(name, '')}")
    return "\n".join(lines)


def configure_backend(args: argparse.Namespace) -> None:
    """Platform and memory settings; must run before jax touches a device."""
    if args.cpu:
        jax.config.update("jax_platforms", "cpu")
    else:
        # Both frameworks share one GPU: jax must not use others, nor grab 75% of its memory
        # up front.
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0")
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs every measurement within the budget; prints and returns the results record."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.report:
        with open(args.report) as f:
            data = json.load(f)
        print(markdown(data))
        return data
    budget = Budget(args.max_seconds)
    configure_backend(args)
    if not args.cpu and jax.default_backend() != "gpu":
        raise SystemExit(
            f"jax runs on {jax.default_backend()!r}, not on a GPU: install jax[cuda12]==0.10.2 "
            "(see this script's docstring), or pass --cpu for the seconds-scale CPU check.")
    torch, torch_reason = import_torch()
    if torch is not None and not args.cpu and not torch.cuda.is_available():
        torch, torch_reason = None, (f"torch {torch.__version__} sees no CUDA device: install "
                                     "a CUDA build of torch (see this script's docstring)")
    teacher = build_teacher(args)
    jax_side = JaxSide(args, teacher)
    torch_side = None
    if torch is not None:
        try:
            torch_side = TorchSide(torch, args, teacher)
        except Exception as err:
            torch_reason = failed(err)["reason"]
    if torch_side is not None:
        # Same weights; max |logit difference| / max |logit| in fp32 on the CPU.
        settings_torch = {"torch_num_params": torch_side.num_params,
                          "torch_logit_difference": torch_side.logit_difference}
    else:
        settings_torch = {"torch": torch_reason}
    settings = {key: getattr(args, key) for key in (
        "cpu", "model", "chunk_size", "num_steps", "repeats", "num_chunks", "max_seconds",
        "torch_compile_backend", "torch_compile_mode", "seed")}
    settings.update(widths=list(teacher.model.widths), stage_sizes=list(
        teacher.model.stage_sizes), image_shape=list(IMAGE_SHAPE), temperature=TEMPERATURE,
        learning_rate=LEARNING_RATE,
        num_params=models.count_params(teacher.variables["params"]), **settings_torch)
    results = Results(args.out, {
        "command": command_line("benchmarks/bench_gpu.py", argv),
        "machine": machine_info(args, torch), "settings": settings})
    print(results.data["command"], flush=True)
    print("\n".join(f"- {k}: {v}" for k, v in results.data["machine"].items()), flush=True)
    print("headline:", flush=True)
    headline(args, budget, results, jax_side, torch_side, torch_reason)
    print("sweep:", flush=True)
    sweep(args, budget, results, jax_side, torch_side, torch_reason)
    results.data["elapsed_seconds"] = budget.max_seconds - budget.left()
    results.write()
    print("\n" + markdown(results.data), flush=True)
    if args.out:
        print(f"\nwrote {args.out}")
    return results.data


if __name__ == "__main__":
    main()
