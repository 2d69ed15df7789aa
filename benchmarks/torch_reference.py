"""Plain eager PyTorch CPU baselines for the jaxinv speed benchmarks.

These mirror how the reference implementations (e.g. vcl-iisc/ZSKD) run: one batch at a
time, eager mode, no compilation, no data-loader tricks. The JAX benchmark imports
:func:`lenet5`, :func:`torch_train_throughput` and :func:`torch_di_synthesis_throughput`.

Importing this module has no side effects; run it as a script for a quick self-test.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "lenet5",
    "self_check",
    "torch_di_synthesis_throughput",
    "torch_train_throughput",
]

# Fixed input geometry of the benchmark: 32x32 grey-scale images (padded MNIST style).
_IMAGE_SHAPE = (1, 32, 32)
_LENET5_PARAMS = 61_706
_LENET5_HALF_PARAMS = 35_820


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


def _num_params(model: nn.Module) -> int:
    """Count all parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def self_check() -> None:
    """Assert the LeNet-5 parameter counts and output shape match the JAX model's spec."""
    full, half = lenet5(), lenet5(half=True)
    assert _num_params(full) == _LENET5_PARAMS, _num_params(full)
    assert _num_params(half) == _LENET5_HALF_PARAMS, _num_params(half)
    with torch.no_grad():
        out = full(torch.zeros(2, *_IMAGE_SHAPE))
    assert out.shape == (2, 10), tuple(out.shape)


def _maybe_set_threads(num_threads: int | None) -> None:
    """Set torch's intra-op thread count only when asked, so the default uses all cores."""
    if num_threads is not None:
        torch.set_num_threads(num_threads)


def torch_train_throughput(
    batch_size: int,
    num_steps: int,
    *,
    warmup_steps: int = 5,
    seed: int = 0,
    num_threads: int | None = None,
) -> float:
    """Measure eager PyTorch training throughput of LeNet-5 on random data.

    Each step is the textbook loop: ``zero_grad``, forward, cross-entropy, backward, Adam step
    (lr 1e-3). A single fixed random batch is reused so that data generation is not timed.

    Args:
        batch_size: Images per step.
        num_steps: Number of timed steps (after warm-up).
        warmup_steps: Untimed steps run first (allocator and kernel warm-up).
        seed: Seed for ``torch.manual_seed``.
        num_threads: If given, passed to ``torch.set_num_threads``.

    Returns:
        Training throughput in images per second over the timed steps.
    """
    _maybe_set_threads(num_threads)
    torch.manual_seed(seed)
    model = lenet5()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.rand(batch_size, *_IMAGE_SHAPE)
    labels = torch.randint(0, 10, (batch_size,))

    def step() -> None:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    for _ in range(warmup_steps):
        step()
    start = time.perf_counter()
    for _ in range(num_steps):
        step()
    elapsed = time.perf_counter() - start
    return batch_size * num_steps / elapsed


def torch_di_synthesis_throughput(
    batch_size: int,
    num_steps: int,
    *,
    temperature: float = 20.0,
    learning_rate: float = 0.05,
    warmup_steps: int = 5,
    seed: int = 0,
    num_threads: int | None = None,
) -> float:
    """Measure eager PyTorch Data Impressions synthesis throughput (ZSKD eq. 2).

    A frozen LeNet-5 teacher (eval mode, ``requires_grad=False``) scores a batch of images
    ``x`` initialised uniform in [0, 1]. Targets ``y`` are Dirichlet samples drawn once. Each
    step minimises ``CE(y, softmax(T(x) / temperature))`` (summed over classes, mean over the
    batch) with Adam on ``x``, then clamps ``x`` to [0, 1] in place, as the reference does.

    Args:
        batch_size: Images optimised jointly per step.
        num_steps: Number of timed steps (after warm-up).
        temperature: Softmax temperature applied to the teacher logits.
        learning_rate: Adam learning rate on the images.
        warmup_steps: Untimed steps run first.
        seed: Seed for ``torch.manual_seed``.
        num_threads: If given, passed to ``torch.set_num_threads``.

    Returns:
        Throughput in image-steps per second (``batch_size * num_steps / seconds``).
    """
    _maybe_set_threads(num_threads)
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
    x = torch.rand(batch_size, *_IMAGE_SHAPE, requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=learning_rate)

    def step() -> None:
        optimizer.zero_grad()
        # log_softmax == log(softmax(.)) but numerically stable; same objective as eq. 2.
        log_probs = F.log_softmax(teacher(x) / temperature, dim=1)
        loss = -(targets * log_probs).sum(dim=1).mean()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)

    for _ in range(warmup_steps):
        step()
    start = time.perf_counter()
    for _ in range(num_steps):
        step()
    elapsed = time.perf_counter() - start
    return batch_size * num_steps / elapsed


if __name__ == "__main__":
    self_check()
    batch, steps = 256, 20
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}")
    train = torch_train_throughput(batch, steps)
    print(f"train      batch={batch} steps={steps}: {train:,.0f} images/s")
    synth = torch_di_synthesis_throughput(batch, steps)
    print(f"DI synth   batch={batch} steps={steps}: {synth:,.0f} image-steps/s")
