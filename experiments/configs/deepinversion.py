"""DeepInversion (Yin et al., CVPR 2020) on the BatchNorm CNN: BN CNN -> BN CNN-half.

  jaxinv run deepinversion.py:mnist --workdir runs/deepinversion_mnist
  jaxinv run deepinversion.py:fashion_mnist --workdir runs/deepinversion_fashion_mnist
  # Adaptive DeepInversion (ADI): the batches also compete with a student trained between them
  jaxinv run deepinversion.py:mnist_adi --workdir runs/adi_mnist
  jaxinv run deepinversion.py:fashion_mnist_adi --workdir runs/adi_fashion_mnist
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

_DATASETS = ("mnist", "fashion_mnist")


def get_config(arg: str = "mnist") -> ml_collections.ConfigDict:
    """`arg`: mnist, fashion_mnist or smoke, optionally with _adi."""
    adaptive = arg.endswith("_adi")
    smoke = arg.removesuffix("_adi") == "smoke"
    dataset = "mnist" if smoke else arg.removesuffix("_adi")
    if dataset not in _DATASETS:
        raise ValueError(f"Unknown deepinversion config {arg!r}; use {', '.join(_DATASETS)} or "
                         "smoke, optionally with _adi.")
    config = ml_collections.ConfigDict()
    config.dataset = dataset
    config.tuned_for = dataset
    config.image_size = 32
    config.teacher = load_sibling(__file__, "teacher.py",
                                  "smoke" if smoke else f"{dataset}_bn_cnn")
    if smoke:
        config.teacher.model = "bn_cnn"
    del config.teacher.dataset, config.teacher.image_size, config.teacher.num_classes
    config.teacher_workdir = ""
    config.synthesis = ml_collections.ConfigDict(dict(
        method="deepinversion", num_per_class=8 if smoke else 500,
        batch_size=10 if smoke else 100, num_steps=60 if smoke else 200, learning_rate=0.1,
        # The smoke teacher (150 steps) and batches of 10: BN 10 would drown the class term.
        weights={"bn": 1.0 if smoke else 10.0, "cls": 1.0, "tv": 1e-3, "l2": 0.0},
        jitter=2 if smoke else 4, flip=False, competition=1.0 if adaptive else 0.0,
        student="bn_cnn_half", student_steps=5 if smoke else 50, student_learning_rate=1e-3,
        chunk_size=80 if smoke else 1000, steps_per_call=20 if smoke else 50,
        checkpoint_every=2 if smoke else 10, seed=0))
    config.task = "distill"
    config.distill = ml_collections.ConfigDict(dict(
        student="bn_cnn_half", seed=0, num_seeds=1, batch_size=32 if smoke else 128,
        num_steps=20 if smoke else 2000, temperature=20.0, scale_by_t2=True,
        checkpoint_every=10 if smoke else 500, log_every=10 if smoke else 100,
        eval_batch_size=1000,
        optimizer=dict(name="adam", learning_rate=1e-3, schedule="cosine", weight_decay=0.0,
                       momentum=0.9),
        augment=dict(scale=0.0, translate=0.0, rotate_degrees=0.0, hflip=False),
        # KD on real data, the ceiling of bn_impressions.py, ADI and cmi.py, is run once, here.
        references=() if smoke or adaptive else ("kd",), diversity=not smoke))
    return config
