"""The demo: the whole pipeline on scikit-learn's bundled 8x8 digits, no download needed.

  jaxinv demo --workdir runs/demo          # both variants below, and a comparison table
  jaxinv run demo.py:data_impressions --workdir runs/demo/data_impressions
  jaxinv run demo.py:class_impressions --workdir runs/demo/class_impressions

A small CNN teacher is trained on the real digits (1,438 train / 359 test images); Data (or
Class) Impressions are synthesised from it alone; a half-width student is distilled on them and
scored on the real held-out digits, next to one distilled on the real training images.
"""

import ml_collections

VARIANTS = ("data_impressions", "class_impressions")


def get_config(arg: str = "data_impressions") -> ml_collections.ConfigDict:
    """`arg` in VARIANTS."""
    if arg not in VARIANTS:
        raise ValueError(f"Unknown demo config {arg!r}; use one of {VARIANTS}.")
    data_impressions = arg == "data_impressions"
    config = ml_collections.ConfigDict()
    config.dataset = "digits"
    config.tuned_for = "digits"
    config.image_size = 8
    config.teacher = ml_collections.ConfigDict(dict(
        model="digits_cnn", train_limit=None, seed=0, batch_size=64, num_steps=600,
        checkpoint_every=200, log_every=50, eval_batch_size=120,
        optimizer=dict(name="adam", learning_rate=2e-3, schedule="cosine", weight_decay=0.0,
                       momentum=0.9),
        augment=dict(scale=0.0, translate=0.0, rotate_degrees=0.0, hflip=False)))
    config.teacher_workdir = ""
    config.synthesis = ml_collections.ConfigDict(dict(
        method="impressions", kind="dirichlet" if data_impressions else "one_hot",
        betas=(1.0, 0.1), floor=1e-3, num_per_class=120, temperature=20.0, num_steps=200,
        learning_rate=0.05, schedule="linear", pixel_l2=0.0, init_resolution=None,
        chunk_size=1200, steps_per_call=50, seed=0))
    config.task = "distill"
    config.distill = ml_collections.ConfigDict(dict(
        student="digits_cnn_half", seed=0, num_seeds=1, batch_size=64, num_steps=800,
        temperature=20.0, scale_by_t2=True, checkpoint_every=400, log_every=50,
        eval_batch_size=120,
        optimizer=dict(name="adam", learning_rate=2e-3, schedule="cosine", weight_decay=0.0,
                       momentum=0.9),
        augment=dict(scale=0.0, translate=0.0, rotate_degrees=0.0, hflip=False),
        references=("kd",) if data_impressions else ()))
    return config
