"""ZSKD on CIFAR-10 (Nayak et al., TPAMI 2021, Tables 3, 5 and 6): configs for an accelerator.

  jaxinv run zskd_cifar10.py:alexnet --workdir runs/zskd_cifar10_alexnet
  jaxinv run zskd_cifar10.py:vgg19_vgg11 --workdir runs/zskd_vgg19_vgg11
  jaxinv run zskd_cifar10.py:vgg19_resnet18 --workdir runs/zskd_vgg19_r18
  jaxinv run zskd_cifar10.py:resnet18 --workdir runs/zskd_resnet18
  # about a minute on 2 CPU cores, for tests:
  jaxinv run zskd_cifar10.py:alexnet_smoke --workdir /tmp/zskd_cifar_smoke

Data: with JAXINV_DATA_DIR set, CIFAR-10 comes from the npz files, which hold only the first
4000 training images and a lossy JPEG (q75) test set, so accuracies are close to but not the
real test set's. For the paper's setting, unset JAXINV_DATA_DIR and point tfds_data_dir at a
prepared tensorflow-datasets `cifar10` (50,000 training images).

Deviation: the paper's synthesis learning rates (10 for VGG, 1e-3 for ResNet-18) are for its
own pixel scaling; here pixels are in [0, 1] and 0.05 with linear decay is used throughout.
"""

import ml_collections

# arg -> (teacher, student, teacher lr, teacher batch, paper numbers)
_SETUPS = {
    "alexnet": ("alexnet", "alexnet_half", 1e-3, 512,
                {"teacher": 83.03, "student_ce": 80.04, "student_kd": 80.08, "zskd": 69.56}),
    "vgg19_vgg11": ("vgg19", "vgg11", 1e-3, 512,
                    {"teacher": 87.99, "student_ce": 84.19, "student_kd": 84.93, "zskd": 74.10}),
    "vgg19_resnet18": ("vgg19", "resnet18", 1e-3, 512,
                       {"teacher": 87.99, "student_ce": 84.45, "student_kd": 86.58,
                        "zskd": 74.76}),
    "resnet18": ("resnet18", "resnet18_half", 1e-2, 512,
                 {"teacher": 86.54, "student_ce": 85.51, "student_kd": 86.31, "zskd": 81.10}),
}


def get_config(arg: str = "alexnet") -> ml_collections.ConfigDict:
    """`arg` is a key of _SETUPS, optionally with `_smoke` appended."""
    name = arg.removesuffix("_smoke")
    smoke = arg.endswith("_smoke")
    if name not in _SETUPS:
        raise ValueError(f"Unknown CIFAR-10 zskd config {arg!r}; use one of {sorted(_SETUPS)}, "
                         "optionally with _smoke.")
    teacher_model, student, teacher_lr, teacher_batch, paper = _SETUPS[name]
    config = ml_collections.ConfigDict()
    config.dataset = "cifar10"
    config.tuned_for = "cifar10"
    config.image_size = 32
    config.teacher_workdir = ""
    config.paper = {"dataset": "cifar10", **paper}
    config.teacher = ml_collections.ConfigDict(dict(
        model="alexnet" if smoke else teacher_model, train_limit=256 if smoke else None,
        seed=0, batch_size=32 if smoke else teacher_batch,
        # The paper trains its CIFAR teachers for 500 epochs.
        num_steps=4 if smoke else 500 * 50000 // teacher_batch,
        checkpoint_every=4 if smoke else 2000, log_every=2 if smoke else 100,
        eval_batch_size=1000,
        optimizer=dict(name="adam", learning_rate=teacher_lr, schedule="cosine",
                       weight_decay=5e-4, momentum=0.9),
        augment=dict(scale=0.0, translate=0.0 if smoke else 0.125, rotate_degrees=0.0,
                     hflip=not smoke)))
    config.synthesis = ml_collections.ConfigDict(dict(
        method="impressions", kind="dirichlet", betas=(1.0, 0.1), floor=1e-3,
        num_per_class=8 if smoke else 4000,  # 40,000 DIs as the paper
        temperature=20.0, num_steps=4 if smoke else 1500, learning_rate=0.05,
        schedule="linear", pixel_l2=0.0, init_resolution=None,
        chunk_size=80 if smoke else 4000, steps_per_call=4 if smoke else 100, seed=0))
    config.task = "distill"
    config.distill = ml_collections.ConfigDict(dict(
        student="alexnet_half" if smoke else student, seed=0, num_seeds=1,
        batch_size=32 if smoke else 512, num_steps=4 if smoke else 200 * 40000 // 512,
        temperature=20.0, scale_by_t2=True, checkpoint_every=4 if smoke else 2000,
        log_every=2 if smoke else 100, eval_batch_size=1000,
        optimizer=dict(name="adam", learning_rate=1e-3, schedule="cosine", weight_decay=0.0,
                       momentum=0.9),
        augment=dict(scale=0.0 if smoke else 0.1, translate=0.0 if smoke else 0.125,
                     rotate_degrees=0.0 if smoke else 10.0, hflip=not smoke),
        references=() if smoke else ("kd", "ce")))
    return config
