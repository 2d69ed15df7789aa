"""PyTorch CPU baselines for the jaxinv speed benchmarks.

These mirror how the reference implementations (e.g. vcl-iisc/ZSKD) run: one batch at a
time, no data-loader tricks. Each step runs eager by default or, with ``compile=True``, as the
same Python step function wrapped in ``torch.compile`` (default mode). The JAX benchmarks use
:class:`TrainBenchmark` and :class:`SynthesisBenchmark`, which build a setup once (model,
optimiser, a fixed random batch) so that repeated timings reuse it and a compiled step is
compiled only once; :func:`torch_train_throughput` and :func:`torch_di_synthesis_throughput`
are one-shot wrappers.

Models: :func:`lenet5` (and LeNet-5-half) on 32x32x1 and :func:`cifar_resnet32` on 32x32x3,
built to match ``jaxinv.models`` layer for layer (the parameter counts are checked by
:func:`self_check` and by ``benchmarks/bench_train.py``).

Importing this module has no side effects; run it as a script for a quick self-test.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "IMAGE_SHAPES",
    "MODELS",
    "CakeBenchmark",
    "DfmBenchmark",
    "SynthesisBenchmark",
    "TrainBenchmark",
    "build_model",
    "cifar_resnet32",
    "distillation_loss",
    "lenet5",
    "lenet5_from_jax",
    "num_params",
    "random_affine",
    "self_check",
    "torch_di_synthesis_throughput",
    "torch_train_throughput",
]

# Input geometry (C, H, W) of each benchmark model.
IMAGE_SHAPES = {"lenet5": (1, 32, 32), "lenet5_half": (1, 32, 32), "resnet32": (3, 32, 32)}
_LENET5_PARAMS = 61_706
_LENET5_HALF_PARAMS = 35_820
# jaxinv.models.get_model("resnet32"): stem, 3 stages of 5 BasicBlocks (16/32/64), 1x1
# projection shortcuts with BatchNorm where the shape changes, global average pool, head.
_RESNET32_PARAMS = 466_906
# jaxinv.models.resnet.CIFAR10_MEAN / CIFAR10_STD: ResNet-32 standardises its [0, 1] input.
_CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR10_STD = (0.2023, 0.1994, 0.2010)
# The ZSKD distillation step: τ = 20 and its on-the-fly augmentation (zskd.py's distill block).
KD_TEMPERATURE = 20.0
ZSKD_AUGMENT = {"scale": 0.1, "translate": 0.08, "rotate_degrees": 10.0}


def lenet5(num_classes: int = 10, half: bool = False) -> nn.Module:
    """Build LeNet-5 for 32x32x1 inputs.

    Args:
        num_classes: Number of output logits.
        half: If True, halve the conv channel counts (6->3, 16->8) as for the "half"
            student network; the fully connected widths stay at 120/84.

    Returns:
        An ``nn.Sequential`` with 61,706 parameters (35,820 when ``half``) for 10 classes.
    """
    c1, c2 = (3, 8) if half else (6, 16)
    return nn.Sequential(
        nn.Conv2d(1, c1, kernel_size=5),  # valid padding: 32 -> 28
        nn.ReLU(),
        nn.MaxPool2d(2),  # 28 -> 14
        nn.Conv2d(c1, c2, kernel_size=5),  # 14 -> 10
        nn.ReLU(),
        nn.MaxPool2d(2),  # 10 -> 5
        nn.Flatten(),
        nn.Linear(c2 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )


class _Standardize(nn.Module):
    """(x - mean) / std per channel, with the statistics as buffers (not parameters)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class BasicBlock(nn.Module):
    """Two bias-free 3x3 convolutions with BatchNorm, as ``jaxinv.models.resnet.BasicBlock``.

    Where the shape changes, the shortcut is a bias-free 1x1 convolution with BatchNorm
    (option B of He et al.); otherwise it is the identity.
    """

    def __init__(self, in_features: int, features: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, features, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(features)  # momentum 0.1, eps 1e-5: jaxinv's batch_norm
        self.conv2 = nn.Conv2d(features, features, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(features)
        self.shortcut = nn.Identity()
        if stride != 1 or in_features != features:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_features, features, 1, stride, bias=False),
                nn.BatchNorm2d(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class CifarResNet(nn.Module):
    """``jaxinv.models.resnet.CifarResNet`` in PyTorch: standardise, 3x3 stem with BatchNorm,
    stages of BasicBlocks (the first keeps the resolution, each later one halves it), global
    average pooling, a linear head."""

    def __init__(self, num_classes: int = 10, stage_sizes: tuple[int, ...] = (5, 5, 5),
                 widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        self.standardize = _Standardize(_CIFAR10_MEAN, _CIFAR10_STD)
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, in_features = [], widths[0]
        for stage, (num_blocks, features) in enumerate(zip(stage_sizes, widths, strict=True)):
            for block in range(num_blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(BasicBlock(in_features, features, stride))
                in_features = features
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(in_features, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(self.standardize(images)))
        return self.head(x.mean(dim=(-2, -1)))


def cifar_resnet32(num_classes: int = 10) -> nn.Module:
    """ResNet-32 for 32x32x3 inputs: 3 stages of 5 BasicBlocks, widths 16/32/64.

    Matches ``jaxinv.models.get_model("resnet32")``: 466,906 parameters for 10 classes.
    """
    return CifarResNet(num_classes, stage_sizes=(5, 5, 5), widths=(16, 32, 64))


MODELS: dict[str, Callable[[int], nn.Module]] = {
    "lenet5": lenet5,
    "lenet5_half": lambda num_classes=10: lenet5(num_classes, half=True),
    "resnet32": cifar_resnet32,
}
_EXPECTED_PARAMS = {"lenet5": _LENET5_PARAMS, "lenet5_half": _LENET5_HALF_PARAMS,
                    "resnet32": _RESNET32_PARAMS}


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    """A benchmark model by its jaxinv name (``lenet5``, ``lenet5_half``, ``resnet32``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](num_classes)


def lenet5_from_jax(params: dict, num_classes: int = 10) -> nn.Module:
    """:func:`lenet5` holding the weights of a trained ``jaxinv`` LeNet-5 (`params` as numpy).

    Convolution kernels go from HWIO to OIHW; the first dense layer's inputs are reordered from
    jaxinv's (h, w, c) flattening of the NHWC map to PyTorch's (c, h, w). The result is in
    evaluation mode and takes NCHW images.
    """
    import numpy as np

    model = lenet5(num_classes)
    convs, denses = [model[0], model[3]], [model[7], model[9], model[11]]
    with torch.no_grad():
        for layer, name in zip(convs, ("conv1", "conv2"), strict=True):
            layer.weight.copy_(torch.from_numpy(
                np.ascontiguousarray(np.transpose(params[name]["kernel"], (3, 2, 0, 1)))))
            layer.bias.copy_(torch.from_numpy(np.asarray(params[name]["bias"])))
        channels = convs[1].out_channels
        fc1 = np.asarray(params["fc1"]["kernel"])  # (5 * 5 * C, 120) in (h, w, c) order
        fc1 = fc1.reshape(5, 5, channels, -1).transpose(2, 0, 1, 3).reshape(fc1.shape)
        for layer, kernel, name in zip(denses, (fc1, params["fc2"]["kernel"],
                                                params["head"]["kernel"]),
                                       ("fc1", "fc2", "head"), strict=True):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.asarray(kernel).T)))
            layer.bias.copy_(torch.from_numpy(np.asarray(params[name]["bias"])))
    return model.eval()


def num_params(model: nn.Module) -> int:
    """Count all parameters of ``model`` (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def self_check() -> None:
    """Assert the parameter counts and output shapes match the JAX models' specs."""
    for name, expected in _EXPECTED_PARAMS.items():
        model = build_model(name)
        assert num_params(model) == expected, (name, num_params(model), expected)
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(2, *IMAGE_SHAPES[name]))
        assert out.shape == (2, 10), (name, tuple(out.shape))


@contextlib.contextmanager
def _threads(num_threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `num_threads` inside, restored after (None: keep)."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def random_affine(images: torch.Tensor, *, scale: float, translate: float,
                  rotate_degrees: float) -> torch.Tensor:
    """Warps each image of an (N, C, H, W) batch in [0, 1] by its own random affine map.

    As ``jaxinv.augment``: zoom s from [1 - scale, 1 + scale], rotation from
    [-rotate_degrees, rotate_degrees], translation per axis from [-translate, translate] of the
    image size, all about the image centre; bilinear sampling with zeros outside the image
    (``F.affine_grid`` + ``F.grid_sample``, pixel-centre coordinates as jaxinv), clipped to
    [0, 1].
    """
    n, _, height, width = images.shape
    zoom = 1.0 + (2.0 * torch.rand(n) - 1.0) * scale
    angle = (2.0 * torch.rand(n) - 1.0) * math.radians(rotate_degrees)
    # Shifts in pixels, (x, y), then in grid_sample's normalised units (align_corners=True).
    shift = (2.0 * torch.rand(n, 2) - 1.0) * translate * torch.tensor([width, height])
    shift = shift * 2.0 / torch.tensor([width - 1, height - 1])
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    # Output point p comes from input point R(θ)ᵀ (p - t) / s.
    linear = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    offset = -(linear @ shift.unsqueeze(-1))
    theta = torch.cat([linear, offset], dim=-1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=True)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=True)
    return warped.clamp(0.0, 1.0)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """Mean cross-entropy from softmax(teacher / τ) to softmax(student / τ), times τ².

    ``jaxinv.losses.distillation_loss`` with ``scale_by_t2=True`` (ZSKD eq. 4, Hinton et al.).
    """
    teacher_probs = F.softmax(teacher_logits / temperature, dim=1)
    log_probs = F.log_softmax(student_logits / temperature, dim=1)
    return -(teacher_probs * log_probs).sum(dim=1).mean() * temperature**2


def frozen(model: nn.Module) -> nn.Module:
    """`model` in eval mode with no parameter gradients: a teacher that only images move."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class _StepBenchmark:
    """A step function built once, run eager or through ``torch.compile``, and timed."""

    step: Callable[[], None]
    num_threads: int | None

    def _finish(self, step: Callable[[], None], compile: bool) -> None:
        # `torch.compile` is lazy: it compiles on the first call(s), i.e. in `warm_up`.
        self.step = torch.compile(step) if compile else step

    def seconds(self, num_steps: int) -> float:
        """Wall-clock seconds of `num_steps` steps (CPU ops are synchronous: no wait needed)."""
        with _threads(self.num_threads):
            start = time.perf_counter()
            for _ in range(num_steps):
                self.step()
            return time.perf_counter() - start

    def warm_up(self, num_steps: int) -> float:
        """Untimed steps (allocator warm-up; compilation when compiled); returns their seconds."""
        return self.seconds(num_steps)


class TrainBenchmark(_StepBenchmark):
    """One PyTorch training setup: model, Adam (lr 1e-3) and a fixed random batch.

    ``step="supervised"``: ``zero_grad``, forward, cross-entropy, backward, Adam step, on
    ``model``. ``step="distill"``: the ZSKD distillation step from a LeNet-5 teacher to a
    LeNet-5-half student (``model`` must be ``"lenet5"``, the teacher): each example warped
    by :func:`random_affine` (ZSKD's zoom 0.1, translation 0.08, rotation 10°), the frozen
    teacher asked on the warped batch under ``no_grad``, then ``zero_grad``, student forward,
    :func:`distillation_loss` at τ = 20, backward, Adam step. A single fixed random batch is
    reused so that data generation is not timed (the augmentation is, as in jaxinv).

    Args:
        model: ``"lenet5"`` or ``"resnet32"``.
        step: ``"supervised"`` or ``"distill"``.
        batch_size: images per step.
        seed: seed for ``torch.manual_seed`` (weights, batch).
        num_threads: torch's intra-op threads while this setup runs (None: torch's own).
        compile: wrap the step function in ``torch.compile`` (default mode).
    """

    def __init__(self, model: str = "lenet5", step: str = "supervised", batch_size: int = 128,
                 *, seed: int = 0, num_threads: int | None = None, compile: bool = False,
                 learning_rate: float = 1e-3):
        if step not in ("supervised", "distill"):
            raise ValueError(f"unknown step {step!r}; expected 'supervised' or 'distill'")
        if step == "distill" and model != "lenet5":
            raise ValueError("the distill step is LeNet-5 -> LeNet-5-half; model must be "
                             f"'lenet5', got {model!r}")
        self.num_threads = num_threads
        torch.manual_seed(seed)
        images = torch.rand(batch_size, *IMAGE_SHAPES[model])
        if step == "supervised":
            net = build_model(model)
            net.train()
            optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
            labels = torch.randint(0, 10, (batch_size,))

            def train_step() -> None:
                optimizer.zero_grad()
                loss = F.cross_entropy(net(images), labels)
                loss.backward()
                optimizer.step()
        else:
            teacher, student = build_model("lenet5"), build_model("lenet5_half")
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
            student.train()
            optimizer = torch.optim.Adam(student.parameters(), lr=learning_rate)

            def train_step() -> None:
                with torch.no_grad():
                    warped = random_affine(images, **ZSKD_AUGMENT)
                    teacher_logits = teacher(warped)
                optimizer.zero_grad()
                loss = distillation_loss(student(warped), teacher_logits, KD_TEMPERATURE)
                loss.backward()
                optimizer.step()

        self._finish(train_step, compile)


class SynthesisBenchmark(_StepBenchmark):
    """Data Impressions synthesis (ZSKD eq. 2) on a batch of images, eager or compiled.

    A frozen LeNet-5 teacher (eval mode, ``requires_grad=False``) scores a batch of images
    ``x`` initialised uniform in [0, 1]. Targets ``y`` are Dirichlet samples drawn once. Each
    step minimises ``CE(y, softmax(T(x) / temperature))`` (summed over classes, mean over the
    batch) with Adam on ``x``, then clamps ``x`` to [0, 1] in place, as the reference does.
    """

    def __init__(self, batch_size: int, *, temperature: float = 20.0,
                 learning_rate: float = 0.05, seed: int = 0, num_threads: int | None = None,
                 compile: bool = False):
        self.num_threads = num_threads
        torch.manual_seed(seed)
        num_classes = 10
        teacher = lenet5(num_classes)
        teacher.eval()
        for p in teacher.parameters():
            # Frozen teacher: only the images receive gradients, as in the reference code.
            p.requires_grad_(False)
        # Strictly positive concentration; the offset keeps the Dirichlet well defined.
        concentration = torch.rand(num_classes) + 0.1
        targets = torch.distributions.Dirichlet(concentration).sample((batch_size,))
        x = torch.rand(batch_size, *IMAGE_SHAPES["lenet5"], requires_grad=True)
        optimizer = torch.optim.Adam([x], lr=learning_rate)

        def synthesis_step() -> None:
            optimizer.zero_grad()
            # log_softmax == log(softmax(.)) but numerically stable; same objective as eq. 2.
            log_probs = F.log_softmax(teacher(x) / temperature, dim=1)
            loss = -(targets * log_probs).sum(dim=1).mean()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)

        self._finish(synthesis_step, compile)


class CakeBenchmark(_StepBenchmark):
    """One CAKE sample set, as the authors' code optimises it (ml-research/CAKE, sampling.py).

    A frozen LeNet-5 scores ``rows`` rows of ``group_size`` samples, each row of distinct
    classes, from N(0, 1) pixels. Each step: ``zero_grad``, forward, the loss
    ``w_cls·G·CE + w_contr·½G²·MSE(all pairs of a row) + w_tv·TV`` (means as the authors
    reduce them), backward, plain SGD on the pixels at step size ``eta``, and a clamp to
    [0, 1] (jaxinv's TransferSet range; the authors do not clamp).
    """

    def __init__(self, rows: int, group_size: int = 10, *, eta: float = 1e-3,
                 weights: tuple[float, float, float] = (1e3, 1e-3, 1e7), seed: int = 0,
                 num_threads: int | None = None, compile: bool = False):
        self.num_threads = num_threads
        torch.manual_seed(seed)
        teacher = frozen(lenet5(10))
        labels = torch.stack([torch.randperm(10)[:group_size] for _ in range(rows)])
        x = torch.randn(rows, group_size, *IMAGE_SHAPES["lenet5"], requires_grad=True)
        optimizer = torch.optim.SGD([x], lr=eta)
        w_cls, w_contr, w_tv = weights

        def cake_step() -> None:
            optimizer.zero_grad()
            logits = teacher(x.view(-1, *IMAGE_SHAPES["lenet5"])).view(rows, group_size, -1)
            classification = F.cross_entropy(logits.reshape(-1, 10), labels.reshape(-1))
            contrastive = F.mse_loss(logits.unsqueeze(1), logits.unsqueeze(2).expand(
                rows, group_size, group_size, 10))
            tv = ((x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(-2, -1))
                  + (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(-2, -1))).mean()
            loss = (w_cls * group_size * classification
                    + w_contr * 0.5 * group_size**2 * contrastive + w_tv * tv)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)

        self._finish(cake_step, compile)


class DfmBenchmark(_StepBenchmark):
    """Data from Model's extraction on one batch, as a plain l2-PGD loop: a frozen LeNet-5,
    images starting at fixed background images, virtual-logit targets; each step the summed
    ‖T(x) − Z_v‖₂, backward, a step of `step_size` along each example's l2-normalised negative
    gradient, projection onto the l2 ball of radius `epsilon` around the background, and a
    clamp to [0, 1]."""

    def __init__(self, batch_size: int, *, epsilon: float = 3.43, step_size: float = 0.17,
                 seed: int = 0, num_threads: int | None = None):
        self.num_threads = num_threads
        torch.manual_seed(seed)
        teacher = frozen(lenet5(10))
        background = torch.rand(batch_size, *IMAGE_SHAPES["lenet5"])
        targets = torch.randn(batch_size, 10)
        x = background.clone().requires_grad_(True)

        def dfm_step() -> None:
            loss = torch.linalg.vector_norm(teacher(x) - targets, dim=1).sum()
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                norm = torch.linalg.vector_norm(grad.flatten(1), dim=1).view(-1, 1, 1, 1)
                delta = x - step_size * grad / (norm + 1e-12) - background
                length = torch.linalg.vector_norm(delta.flatten(1), dim=1).view(-1, 1, 1, 1)
                delta = delta * torch.clamp(epsilon / (length + 1e-12), max=1.0)
                x.copy_((background + delta).clamp(0.0, 1.0))

        self._finish(dfm_step, compile=False)


def torch_train_throughput(
    batch_size: int,
    num_steps: int,
    *,
    warmup_steps: int = 5,
    seed: int = 0,
    num_threads: int | None = None,
    model: str = "lenet5",
    step: str = "supervised",
    compile: bool = False,
) -> float:
    """Training throughput of one :class:`TrainBenchmark` setup, in images per second.

    Args:
        batch_size: Images per step.
        num_steps: Number of timed steps (after warm-up).
        warmup_steps: Untimed steps run first (allocator and kernel warm-up, compilation).
        seed: Seed for ``torch.manual_seed``.
        num_threads: If given, torch's thread count for this call (restored after it).
        model: ``"lenet5"`` or ``"resnet32"``.
        step: ``"supervised"`` or ``"distill"`` (LeNet-5 -> LeNet-5-half).
        compile: run the step through ``torch.compile``.
    """
    bench = TrainBenchmark(model, step, batch_size, seed=seed, num_threads=num_threads,
                           compile=compile)
    bench.warm_up(warmup_steps)
    return batch_size * num_steps / bench.seconds(num_steps)


def torch_di_synthesis_throughput(
    batch_size: int,
    num_steps: int,
    *,
    temperature: float = 20.0,
    learning_rate: float = 0.05,
    warmup_steps: int = 5,
    seed: int = 0,
    num_threads: int | None = None,
    compile: bool = False,
) -> float:
    """Data Impressions synthesis throughput of one :class:`SynthesisBenchmark` setup.

    Returns:
        Throughput in image-steps per second (``batch_size * num_steps / seconds``).
    """
    bench = SynthesisBenchmark(batch_size, temperature=temperature, learning_rate=learning_rate,
                               seed=seed, num_threads=num_threads, compile=compile)
    bench.warm_up(warmup_steps)
    return batch_size * num_steps / bench.seconds(num_steps)


if __name__ == "__main__":
    self_check()
    batch, steps = 64, 5
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}")
    for model, step in (("lenet5", "supervised"), ("lenet5", "distill"),
                        ("resnet32", "supervised")):
        rate = torch_train_throughput(batch, steps, warmup_steps=1, model=model, step=step)
        print(f"train {model} {step} batch={batch} steps={steps}: {rate:,.0f} images/s")
    synth = torch_di_synthesis_throughput(batch, steps, warmup_steps=1)
    print(f"DI synth   batch={batch} steps={steps}: {synth:,.0f} image-steps/s")
