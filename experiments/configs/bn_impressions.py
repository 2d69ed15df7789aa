"""Data Impressions on the BatchNorm CNN, at deepinversion.py's image and distillation budget.

  jaxinv run bn_impressions.py:mnist --workdir runs/bn_impressions_mnist
  jaxinv run bn_impressions.py:fashion_mnist --workdir runs/bn_impressions_fashion_mnist
  jaxinv run bn_impressions.py:cifar10 --workdir runs/bn_impressions_cifar10
  jaxinv run bn_impressions.py:smoke --workdir /tmp/bn_impressions_smoke

The row of Data Impressions next to DeepInversion, ADI and CMI (deepinversion.py, cmi.py):
the same BN CNN teacher, 5,000 images and the same BN CNN-half student trained the same way.
The synthesis settings are zskd.py's (Dirichlet targets with β ∈ {1, 0.1}, τ = 20, 200 steps,
Adam 0.05 decaying linearly, 8x8 starting noise, its pixel l2 prior), chosen there for
LeNet-5, and for cifar10 zskd_cifar10.py's at deepinversion.py's 200 steps; they were not
tuned for these teachers.
"""

import ml_collections

from jaxinv.experiment_configs import load_sibling


def get_config(arg: str = "mnist") -> ml_collections.ConfigDict:
    """`arg`: mnist, fashion_mnist, cifar10 or smoke."""
    config = load_sibling(__file__, "deepinversion.py", arg)
    config.distill.references = ()
    bn_budget = config.synthesis
    if arg == "cifar10":
        config.synthesis = load_sibling(__file__, "zskd_cifar10.py", "alexnet").synthesis
        config.synthesis.num_steps = bn_budget.num_steps
    else:
        config.synthesis = load_sibling(__file__, "zskd.py", arg).synthesis
    config.synthesis.num_per_class = bn_budget.num_per_class
    if arg != "smoke":
        config.synthesis.chunk_size = bn_budget.chunk_size
    return config
