"""Figures 3 and 4 of the Data Impressions paper: accuracy against transfer-set size.

  jaxinv run transfer_size.py:mnist --workdir runs/transfer_size_mnist
  jaxinv run transfer_size.py:fashion_mnist --workdir runs/transfer_size_fashion_mnist
  jaxinv run transfer_size.py:smoke --workdir /tmp/fig34_smoke

18 students and 2 x 48,000 impressions: to fit in about 30 minutes on 2 CPU cores, 100
synthesis steps and 3,000 distillation steps per student, impressions from the paper's
pixel-wise noise and students without augmentation, as the paper's figures.
"""

import ml_collections

from jaxinv.experiment_configs import load_sibling

_TRAIN_SIZE = 60000


def get_config(arg: str = "mnist") -> ml_collections.ConfigDict:
    """`arg` in {mnist, fashion_mnist, smoke}; synthesis and distillation as in zskd.py."""
    smoke = arg == "smoke"
    config = load_sibling(__file__, "zskd.py", arg)
    if "paper" in config:  # Figures 3 and 4 have no figures of Table 1's
        del config.paper
    config.task = "transfer_size"
    percentages = (0.2, 0.4) if smoke else (1, 5, 10, 20, 40, 80)
    num_classes = 10
    config.synthesis.num_per_class = -(-int(max(percentages) * _TRAIN_SIZE / 100) // num_classes)
    config.synthesis.init_resolution = None
    config.distill.augment = ml_collections.ConfigDict(dict(
        scale=0.0, translate=0.0, rotate_degrees=0.0, hflip=False))
    config.distill.references = ()
    if not smoke:
        config.synthesis.num_steps = 100
        config.distill.num_steps = 3000
    baseline = config.synthesis.copy_and_resolve_references()
    baseline.kind = "one_hot"
    config.transfer_size = ml_collections.ConfigDict(dict(
        percentages=percentages, baseline=baseline, baseline_label="class_impressions"))
    return config
