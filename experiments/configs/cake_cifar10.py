"""CAKE on CIFAR-10, ResNet-34 -> ResNet-18 (Braun et al., AISTATS 2024): for an accelerator.

  jaxinv run cake_cifar10.py:resnet34_resnet18 --workdir runs/cake_cifar10
  # about a minute on 2 CPU cores, for tests (AlexNet, a few steps):
  jaxinv run cake_cifar10.py:smoke --workdir /tmp/cake_cifar10_smoke

The authors' CIFAR-10 settings (ml-research/CAKE, conf/dataset/cifar-10.yaml, conf/config.yaml):
500 sets of 50 rows of 10 classes (250,000 samples), 256 SGD steps, η from 0.1 decaying 10⁴-fold
across the sets, weights cls 1e3, contrastive 1e1, TV 1e5; the student learns the teacher's
softmax by SGD 0.5, momentum 0.9, weight decay 5e-4, one-cycle, 30 epochs of batch 256. In
jaxinv's units (jaxinv/synthesis/cake.py) η = 0.1 σ² / 50 with CIFAR-10's mean pixel std σ, and
the start is N(μ, σ²) with its mean pixel mean μ. The student keeps the authors' SGD at 0.5,
which they tuned for ResNet-18 on CIFAR-10; with LeNet-5-half on MNIST it diverged (cake.py
uses 0.05 there, chosen on a validation split), so check the student's loss curve first.

Data: with JAXINV_DATA_DIR set, CIFAR-10 comes from the npz files (the first 4000 training
images, a lossy test set; see zskd_cifar10.py); for the real sets unset it and point
tfds_data_dir at a prepared tensorflow-datasets `cifar10`.
"""

import ml_collections

from jaxinv.models import CIFAR10_MEAN, CIFAR10_STD

_MEAN = sum(CIFAR10_MEAN) / 3
_STD = sum(CIFAR10_STD) / 3
_ROWS_PER_SET = 50


def get_config(arg: str = "resnet34_resnet18") -> ml_collections.ConfigDict:
    """`arg`: resnet34_resnet18 or smoke."""
    if arg not in ("resnet34_resnet18", "smoke"):
        raise ValueError(f"Unknown cake_cifar10 config {arg!r}; use resnet34_resnet18 or smoke.")
    smoke = arg == "smoke"
    config = ml_collections.ConfigDict()
    config.dataset = "cifar10"
    config.tuned_for = "cifar10"
    config.image_size = 32
    config.teacher_workdir = ""
    config.teacher = ml_collections.ConfigDict(dict(
        model="alexnet" if smoke else "resnet34", train_limit=256 if smoke else None, seed=0,
        batch_size=32 if smoke else 256, num_steps=4 if smoke else 200 * 50000 // 256,
        checkpoint_every=4 if smoke else 2000, log_every=2 if smoke else 100,
        eval_batch_size=1000,
        optimizer=dict(name="sgd", learning_rate=0.1, schedule="cosine", weight_decay=5e-4,
                       momentum=0.9),
        augment=dict(scale=0.0, translate=0.0 if smoke else 0.125, rotate_degrees=0.0,
                     hflip=not smoke)))
    rows_per_set = 8 if smoke else _ROWS_PER_SET
    num_sets = 2 if smoke else 500
    config.synthesis = ml_collections.ConfigDict(dict(
        method="cake", group_size=10, rows_per_set=rows_per_set, num_sets=num_sets,
        num_steps=4 if smoke else 256, step_size=0.1 * _STD**2 / rows_per_set,
        step_decay_decades=4.0, langevin=False,
        weights={"cls": 1e3, "contrastive": 1e1, "tv": 1e5}, init_mean=_MEAN, init_std=_STD,
        chunk_size=80 if smoke else 5000, steps_per_call=4 if smoke else 64, seed=0))
    num_samples = num_sets * rows_per_set * 10
    config.task = "distill"
    config.distill = ml_collections.ConfigDict(dict(
        student="alexnet_half" if smoke else "resnet18", seed=0, num_seeds=1,
        batch_size=32 if smoke else 256, num_steps=4 if smoke else 30 * num_samples // 256,
        temperature=1.0, scale_by_t2=False, checkpoint_every=4 if smoke else 2000,
        log_every=2 if smoke else 100, eval_batch_size=1000,
        optimizer=dict(name="sgd", learning_rate=0.5, schedule="onecycle", weight_decay=5e-4,
                       momentum=0.9),
        augment=dict(scale=0.0, translate=0.0, rotate_degrees=0.0, hflip=False),
        references=()))
    return config
