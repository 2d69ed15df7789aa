"""`jaxinv demo`: the whole pipeline on scikit-learn's bundled 8x8 digits, no download needed."""

from __future__ import annotations

import os

import ml_collections

from jaxinv import report, train


def demo_teacher_config() -> ml_collections.ConfigDict:
    """A small CNN teacher on digits (1,437 train / 360 test images): seconds on one CPU core."""
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


def run_demo(workdir: str) -> dict:
    """Trains the digits teacher into `workdir/teacher` and prints its test accuracy."""
    teacher = train.train_and_evaluate(demo_teacher_config(), os.path.join(workdir, "teacher"))
    rows = [("teacher (digits_cnn, real labels)", teacher["test_accuracy"])]
    print(report.markdown_table(["model", "test accuracy (%)"], rows))
    results = {"teacher_test_accuracy": teacher["test_accuracy"]}
    report.write_json(os.path.join(workdir, "results.json"), results)
    return results
