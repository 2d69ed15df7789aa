"""`jaxinv demo`: the whole pipeline on scikit-learn's bundled 8x8 digits, no download needed.

A teacher is trained on the real digits; Data Impressions and Class Impressions are synthesised
from it alone; students are distilled on each; all are scored on the real held-out digits next
to a student distilled on the real training images (Student-KD).
"""

from __future__ import annotations

import os

import ml_collections

from jaxinv import report, train, zskd


def demo_teacher_config() -> ml_collections.ConfigDict:
    """A small CNN teacher on digits (1,438 train / 359 test images)."""
    config = ml_collections.ConfigDict()
    config.dataset = "digits"
    config.image_size = 8
    config.train_limit = None
    config.model = "digits_cnn"
    config.num_classes = 10
    config.seed = 0
    config.batch_size = 64
    config.num_steps = 600
    config.checkpoint_every = 200
    config.log_every = 50
    config.eval_batch_size = 120
    config.optimizer = ml_collections.ConfigDict(dict(
        name="adam", learning_rate=2e-3, schedule="cosine", weight_decay=0.0, momentum=0.9))
    return config


def demo_zskd_config(kind: str, teacher_workdir: str) -> ml_collections.ConfigDict:
    """ZSKD on digits from the trained teacher: `kind` "dirichlet" (DIs) or "one_hot" (CIs)."""
    config = ml_collections.ConfigDict()
    config.task = "zskd"
    config.dataset = "digits"
    config.image_size = 8
    config.teacher_workdir = teacher_workdir
    config.student = "digits_cnn_half"
    config.synthesis = ml_collections.ConfigDict(dict(
        kind=kind, betas=(1.0, 0.1), floor=1e-3, num_per_class=120, temperature=20.0,
        num_steps=200, learning_rate=0.05, schedule="linear", pixel_l2=0.0, pixel_l1=0.0,
        tv_l2=0.0, jitter=0, init_resolution=None, chunk_size=1200, steps_per_call=50,
        seed=0))
    config.distill = ml_collections.ConfigDict(dict(
        seed=0, num_seeds=1, batch_size=64, num_steps=800, temperature=20.0, scale_by_t2=True,
        checkpoint_every=400, log_every=50, eval_batch_size=120,
        optimizer=dict(name="adam", learning_rate=2e-3, schedule="cosine", weight_decay=0.0,
                       momentum=0.9),
        augment=dict(scale=0.0, translate=0.0, rotate_degrees=0.0, hflip=False)))
    config.references = ("kd",) if kind == "dirichlet" else ()
    config.similarity_check = kind == "dirichlet"
    return config


def run_demo(workdir: str) -> dict:
    """Runs teacher → impressions → students into `workdir` and prints the comparison table."""
    teacher_dir = os.path.join(workdir, "teacher")
    teacher = train.train_and_evaluate(demo_teacher_config(), teacher_dir)
    di = zskd.zskd_and_evaluate(demo_zskd_config("dirichlet", teacher_dir),
                                os.path.join(workdir, "data_impressions"))
    ci = zskd.zskd_and_evaluate(demo_zskd_config("one_hot", teacher_dir),
                                os.path.join(workdir, "class_impressions"))
    results = {
        "teacher_test_accuracy": teacher["test_accuracy"],
        "student_kd_real_data_test_accuracy": di["student_kd_test_accuracy"],
        "zskd_data_impressions_test_accuracy": di["zskd_student_test_accuracy"],
        "zskd_class_impressions_test_accuracy": ci["zskd_student_test_accuracy"],
        "num_impressions": di["num_impressions"],
    }
    rows = [("teacher (digits_cnn, real labels)", results["teacher_test_accuracy"]),
            ("Student-KD (digits_cnn_half, real images)",
             results["student_kd_real_data_test_accuracy"]),
            (f"ZSKD student on {di['num_impressions']} Data Impressions",
             results["zskd_data_impressions_test_accuracy"]),
            (f"student on {ci['num_impressions']} Class Impressions",
             results["zskd_class_impressions_test_accuracy"])]
    print(report.markdown_table(["model", "digits test accuracy (%)"], rows))
    report.write_json(os.path.join(workdir, "results.json"), results)
    return results
