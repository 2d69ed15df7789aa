"""PyTorch loops of DeepInversion and CMI, for benchmarks/bench_bn_inversion.py.

Straightforward loops of the same objectives as jaxinv.synthesis.deepinversion and
jaxinv.synthesis.cmi, written as the reference code (zju-vipa/DataFree) runs them: forward
hooks on every BatchNorm layer collect the batch statistics, one batch at a time, eager.
The teacher is :class:`WideResNet`, ``jaxinv.models.WideResNet`` layer for layer.

Importing this module has no side effects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.torch_reference import (
    _CIFAR10_MEAN,
    _CIFAR10_STD,
    _Standardize,
    _StepBenchmark,
    frozen,
    random_affine,
)


class _WideBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3; a 1x1 shortcut of the pre-activation where the shape
    changes (``jaxinv.models.wrn.WideBasicBlock``)."""

    def __init__(self, in_features: int, features: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_features)
        self.conv1 = nn.Conv2d(in_features, features, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(features)
        self.conv2 = nn.Conv2d(features, features, 3, 1, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(in_features, features, 1, stride, bias=False)
                         if stride != 1 or in_features != features else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preactivated = F.relu(self.bn1(x))
        y = self.conv2(F.relu(self.bn2(self.conv1(preactivated))))
        return (x if self.shortcut is None else self.shortcut(preactivated)) + y


class WideResNet(nn.Module):
    """WRN-d-k for 32x32x3 images, as ``jaxinv.models.WideResNet``."""

    def __init__(self, depth: int = 16, widen_factor: int = 1, num_classes: int = 10):
        super().__init__()
        self.standardize = _Standardize(_CIFAR10_MEAN, _CIFAR10_STD)
        self.stem = nn.Conv2d(3, 16, 3, 1, padding=1, bias=False)
        blocks, in_features = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for block in range((depth - 4) // 6):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(_WideBlock(in_features, width * widen_factor, stride))
                in_features = width * widen_factor
        self.blocks = nn.Sequential(*blocks)
        self.final_bn = nn.BatchNorm2d(in_features)
        self.head = nn.Linear(in_features, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.final_bn(self.blocks(self.stem(self.standardize(images)))))
        return self.head(x.mean(dim=(-2, -1)))


class _BatchNormHooks:
    """Collects, at every BatchNorm layer's input, the batch's mean and variance, the running
    ones, and each example's spatial mean (CMI's contrastive feature), on every forward pass."""

    def __init__(self, model: nn.Module):
        self.stats: list[tuple[torch.Tensor, ...]] = []
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        x = inputs[0]
        self.stats.append((x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False),
                           module.running_mean, module.running_var, x.mean(dim=(2, 3))))

    def take(self) -> list[tuple[torch.Tensor, ...]]:
        stats, self.stats = self.stats, []
        return stats


def _bn_loss(stats) -> torch.Tensor:
    return sum(torch.linalg.norm(mean - run_mean) + torch.linalg.norm(var - run_var)
               for mean, var, run_mean, run_var, _ in stats)


def _frozen_teacher(depth: int, widen_factor: int) -> tuple[nn.Module, _BatchNormHooks]:
    teacher = frozen(WideResNet(depth, widen_factor))
    return teacher, _BatchNormHooks(teacher)


def _jitter(x: torch.Tensor, jitter: int, flip: bool) -> torch.Tensor:
    dy, dx = torch.randint(-jitter, jitter + 1, (2,)).tolist()
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    return torch.flip(x, dims=(3,)) if flip and torch.rand(()) < 0.5 else x


class DeepInversionBenchmark(_StepBenchmark):
    """DeepInversion on one batch: pixels from U(0, 1), one roll and flip shared by the batch,
    10·L_bn + CE + 1e-3·TV₂, Adam (0.1, β 0.5, 0.99), a clamp to [0, 1]."""

    def __init__(self, batch_size: int, *, depth: int = 16, widen_factor: int = 1,
                 seed: int = 0, num_threads: int | None = None):
        self.num_threads = num_threads
        torch.manual_seed(seed)
        teacher, hooks = _frozen_teacher(depth, widen_factor)
        x = torch.rand(batch_size, 3, 32, 32, requires_grad=True)
        labels = torch.randint(0, 10, (batch_size,))
        optimizer = torch.optim.Adam([x], lr=0.1, betas=(0.5, 0.99))

        def step() -> None:
            optimizer.zero_grad()
            logits = teacher(_jitter(x, 4, True))
            tv = (((x[..., 1:, :] - x[..., :-1, :]) ** 2).sum(dim=(1, 2, 3))
                  + ((x[..., :, 1:] - x[..., :, :-1]) ** 2).sum(dim=(1, 2, 3))).mean()
            loss = 10.0 * _bn_loss(hooks.take()) + F.cross_entropy(logits, labels) + 1e-3 * tv
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)

        self._finish(step, compile=False)


class _Generator(nn.Module):
    """``jaxinv.models.cmi.CMIGenerator``: dense to an 8x8 map, BN, two (upsample, conv, BN,
    leaky ReLU), a conv to the image and a sigmoid."""

    def __init__(self, latent_dim: int, width: int):
        super().__init__()
        self.width = width
        self.project = nn.Linear(latent_dim, 8 * 8 * width)
        self.body = nn.Sequential(
            nn.BatchNorm2d(width), nn.Upsample(scale_factor=2),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2), nn.Conv2d(width, width // 2, 3, padding=1),
            nn.BatchNorm2d(width // 2), nn.LeakyReLU(0.2),
            nn.Conv2d(width // 2, 3, 3, padding=1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z).view(len(z), self.width, 8, 8))


class CMIBenchmark(_StepBenchmark):
    """CMI rounds: a fresh generator and z per round, then `num_steps` Adam steps (1e-3, β 0.5,
    0.999) on L_bn + CE + 0.5·L_adv + 0.8·L_cr (per-example global and local views, drawn as
    jaxinv's cmi.py draws them, through the teacher; the frozen student in inference mode on
    the global view; the head, whose Adam state persists, on the BN inputs' spatial means;
    negatives from the batch and the filled part of a feature bank); then the batch's features
    join the bank and the student takes one KD step on the batch. `step` runs one generator
    step; a round starts every `num_steps` steps."""

    def __init__(self, batch_size: int, *, num_steps: int, depth: int = 16,
                 widen_factor: int = 1, latent_dim: int = 256, generator_width: int = 64,
                 bank_size: int = 4096, num_negatives: int = 1024, head_dim: int = 256,
                 seed: int = 0, num_threads: int | None = None):
        self.num_threads = num_threads
        torch.manual_seed(seed)
        teacher, hooks = _frozen_teacher(depth, widen_factor)
        student = WideResNet(depth, widen_factor)
        student_optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
        feature_dim = sum(m.num_features for m in teacher.modules()
                          if isinstance(m, nn.BatchNorm2d))
        head = nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(),
                             nn.Linear(feature_dim, head_dim))
        head_optimizer = torch.optim.Adam(head.parameters(), lr=1e-3, betas=(0.5, 0.999))
        bank = torch.zeros(bank_size, feature_dim)
        labels = torch.randint(0, 10, (batch_size,))
        state: dict = {"count": 0, "filled": 0}

        def global_view(x: torch.Tensor) -> torch.Tensor:
            return random_affine(x, scale=0.0, translate=0.125, rotate_degrees=0.0)

        def set_student_training(training: bool) -> None:
            student.train(training)
            for p in student.parameters():
                p.requires_grad_(training)

        def new_round() -> None:
            generator = _Generator(latent_dim, generator_width)
            z = torch.randn(batch_size, latent_dim, requires_grad=True)
            state.update(generator=generator, z=z, optimizer=torch.optim.Adam(
                [*generator.parameters(), z], lr=1e-3, betas=(0.5, 0.999)))
            set_student_training(False)

        def end_round(images: torch.Tensor) -> None:
            with torch.no_grad():
                teacher(global_view(images))
                slots = (state["filled"] + torch.arange(batch_size)) % bank_size
                bank[slots] = torch.cat([s[4] for s in hooks.take()], 1)
                state["filled"] += batch_size
                targets = teacher(images)
                hooks.take()
            set_student_training(True)
            student_optimizer.zero_grad()
            F.kl_div(F.log_softmax(student(images) / 20, 1), F.softmax(targets / 20, 1),
                     reduction="batchmean").backward()
            student_optimizer.step()

        def unit(e: torch.Tensor) -> torch.Tensor:
            return F.normalize(e, dim=1)

        def step() -> None:
            if state["count"] % num_steps == 0:
                new_round()
            state["count"] += 1
            generator, z, optimizer = (state[k] for k in ("generator", "z", "optimizer"))
            optimizer.zero_grad()
            head_optimizer.zero_grad()
            images = generator(z)
            seen = global_view(images)
            logits = teacher(seen)
            global_stats = hooks.take()
            teacher(random_affine(images, scale=0.5, translate=0.25, rotate_degrees=0.0))
            local_stats = hooks.take()
            student_logits = student(seen)  # its BN layers are not hooked
            agree = (logits.argmax(1) == student_logits.argmax(1)).float()
            kl = (F.softmax(logits, 1) * (F.log_softmax(logits, 1)
                                          - F.log_softmax(student_logits, 1))).sum(1)
            adversarial = -(kl * agree).mean()
            global_embedding = unit(head(torch.cat([s[4] for s in global_stats], 1))).detach()
            local_embedding = unit(head(torch.cat([s[4] for s in local_stats], 1)))
            filled = max(min(state["filled"], bank_size), 1)
            negatives = torch.cat([global_embedding, unit(head(
                bank[torch.randint(0, filled, (num_negatives,))]))])
            positive = (local_embedding * global_embedding).sum(1, keepdim=True)
            similarities = torch.cat([positive, local_embedding @ negatives.T], 1) / 0.1
            contrastive = F.cross_entropy(similarities, torch.zeros(batch_size, dtype=torch.long))
            loss = (_bn_loss(global_stats) + F.cross_entropy(logits, labels) + 0.5 * adversarial
                    + 0.8 * contrastive)
            loss.backward()
            optimizer.step()
            head_optimizer.step()
            if state["count"] % num_steps == 0:
                with torch.no_grad():
                    final = generator(z)
                end_round(final)

        self._finish(step, compile=False)
