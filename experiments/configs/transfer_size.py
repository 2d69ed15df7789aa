"""Figures 3 and 4 of the Data Impressions paper: accuracy against transfer-set size.

  jaxinv run experiments/configs/transfer_size.py:mnist --workdir runs/transfer_size_mnist \
      --config.teacher_workdir=runs/teacher_mnist_plain
  jaxinv run experiments/configs/transfer_size.py:fashion_mnist \
      --workdir runs/transfer_size_fashion_mnist \
      --config.teacher_workdir=runs/teacher_fashion_mnist
  jaxinv run experiments/configs/transfer_size.py:smoke --workdir /tmp/fig34_smoke
"""

import os

import ml_collections

from jaxinv import config_files


def _zskd_config(arg: str) -> ml_collections.ConfigDict:
    here = os.path.dirname(os.path.abspath(__file__))
    return config_files.load_config(f"{os.path.join(here, 'zskd.py')}:{arg}")


def get_config(arg: str = "mnist") -> ml_collections.ConfigDict:
    """`arg` in {mnist, fashion_mnist, smoke}; synthesis and distillation as in zskd.py."""
    smoke = arg == "smoke"
    config = _zskd_config(arg)
    config.task = "transfer_size"
    config.percentages = (0.2, 0.4) if smoke else (1, 5, 10, 20, 40, 80)
    # One student per size, as in the paper's figures.
    del config.references, config.similarity_check, config.paper, config.distill.num_seeds
    # Impressions start from the paper's pixel-wise noise, as in the recorded figures.
    config.synthesis.init_resolution = None
    # The paper's figures distil without augmentation.
    config.distill.augment = ml_collections.ConfigDict(dict(
        scale=0.0, translate=0.0, rotate_degrees=0.0, hflip=False))
    if smoke:
        config.teacher.train_limit = 512
    else:
        # 18 students and 2 x 48,000 impressions: to fit in about 30 minutes on 2 CPU cores,
        # half the synthesis steps of zskd.py and 3,000 distillation steps per student.
        config.synthesis.num_steps = 100
        config.distill.num_steps = 3000
    return config
