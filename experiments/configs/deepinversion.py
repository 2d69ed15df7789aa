"""DeepInversion (Yin et al., CVPR 2020) on the BatchNorm CNN: BN CNN -> BN CNN-half.

  jaxinv run deepinversion.py:mnist --workdir runs/deepinversion_mnist
  jaxinv run deepinversion.py:fashion_mnist --workdir runs/deepinversion_fashion_mnist
  # Adaptive DeepInversion (ADI): the batches also compete with a student trained between them
  jaxinv run deepinversion.py:mnist_adi --workdir runs/adi_mnist
  jaxinv run deepinversion.py:fashion_mnist_adi --workdir runs/adi_fashion_mnist
  # the CPU-scale CIFAR-10 teacher, WRN-10-1 -> WRN-10-1-half on the 4,000 training images of
  # the CIFAR-10 files (the JPEG test set; see zskd_cifar10.py), with flips and crops:
  jaxinv run deepinversion.py:cifar10 --workdir runs/deepinversion_cifar10
  # Seconds, for tests:
  jaxinv run deepinversion.py:smoke --workdir /tmp/deepinversion_smoke
  jaxinv run deepinversion.py:smoke_adi --workdir /tmp/adi_smoke

The reference settings (the CMI code base, zju-vipa/DataFree): batches of 256, Adam lr 0.1
(β 0.5, 0.99), 1,000 steps, weights BN 10, class 1, TV 1e-3, l2 0; a roll of up to 4 pixels
and a flip shared by the batch (no flip here: digits); students learn the teacher's outputs at
T = 20; ADI's competition weight is 1 (JS at T = 3). Sized for 2 CPU cores: 5,000 images
(500 per class) in batches of 100, 200 steps; ADI's inner student (BN CNN-half) takes 50 Adam
steps on the bank after each batch; the final student takes 2,000 Adam steps of batch 128.
"""

import ml_collections

from jaxinv.experiment_configs import load_sibling

# dataset -> (teacher recipe of teacher.py, student, colour images: flips and crops)
_SETUPS = {"mnist": ("mnist_bn_cnn", "bn_cnn_half", False),
           "fashion_mnist": ("fashion_mnist_bn_cnn", "bn_cnn_half", False),
           "cifar10": ("cifar10_wrn10_1", "wrn10_1_half", True)}


def get_config(arg: str = "mnist") -> ml_collections.ConfigDict:
    """`arg`: mnist, fashion_mnist, cifar10 or smoke, optionally with _adi."""
    adaptive = arg.endswith("_adi")
    smoke = arg.removesuffix("_adi") == "smoke"
    dataset = "mnist" if smoke else arg.removesuffix("_adi")
    if dataset not in _SETUPS:
        raise ValueError(f"Unknown deepinversion config {arg!r}; use {', '.join(_SETUPS)} or "
                         "smoke, optionally with _adi.")
    recipe, student, colour = _SETUPS[dataset]
    config = ml_collections.ConfigDict()
    config.dataset = dataset
    config.tuned_for = dataset
    config.image_size = 32
    config.teacher = load_sibling(__file__, "teacher.py", "smoke" if smoke else recipe)
    if smoke:
        config.teacher.model = "bn_cnn"
    del config.teacher.dataset, config.teacher.image_size, config.teacher.num_classes
    config.teacher_workdir = ""
    config.synthesis = ml_collections.ConfigDict(dict(
        method="deepinversion", num_per_class=8 if smoke else 500,
        batch_size=10 if smoke else 100, num_steps=60 if smoke else 200, learning_rate=0.1,
        # The smoke teacher (150 steps) and batches of 10: BN 10 would drown the class term.
        weights={"bn": 1.0 if smoke else 10.0, "cls": 1.0, "tv": 1e-3, "l2": 0.0},
        jitter=2 if smoke else 4, flip=colour, competition=1.0 if adaptive else 0.0,
        student=student, student_steps=5 if smoke else 50, student_learning_rate=1e-3,
        chunk_size=80 if smoke else 1000, steps_per_call=20 if smoke else 50,
        checkpoint_every=2 if smoke else 10, seed=0))
    config.task = "distill"
    config.distill = ml_collections.ConfigDict(dict(
        student=student, seed=0, num_seeds=1, batch_size=32 if smoke else 128,
        num_steps=20 if smoke else 2000, temperature=20.0, scale_by_t2=True,
        checkpoint_every=10 if smoke else 500, log_every=10 if smoke else 100,
        eval_batch_size=1000,
        optimizer=dict(name="adam", learning_rate=1e-3, schedule="cosine", weight_decay=0.0,
                       momentum=0.9),
        # Crops and flips for colour images, as the reference trains its students.
        augment=dict(scale=0.0, translate=0.125 if colour else 0.0, rotate_degrees=0.0,
                     hflip=colour),
        # KD on real data, the ceiling of bn_impressions.py, ADI and cmi.py, is run once, here.
        references=() if adaptive else ("kd",), diversity=True))
    return config
