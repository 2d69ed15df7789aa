"""jaxinv: data-free knowledge transfer in JAX.

Synthesise inputs that stand in for a classifier's unseen training data, then use them to
distil students, adapt to new domains, learn new classes and probe robustness.
"""

from jaxinv.data import load_dataset
from jaxinv.distill import distill_and_evaluate
from jaxinv.synthesis.dirichlet import class_similarity, dirichlet_targets, one_hot_targets
from jaxinv.synthesis.impressions import impressions_method
from jaxinv.synthesis.runner import SynthesisMethod, synthesize
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.teacher import Teacher, load_teacher
from jaxinv.train import train_and_evaluate
from jaxinv.zskd import zskd_and_evaluate

__version__ = "0.1.0"

__all__ = [
    "SynthesisMethod",
    "Teacher",
    "TransferSet",
    "class_similarity",
    "dirichlet_targets",
    "distill_and_evaluate",
    "impressions_method",
    "load_dataset",
    "load_teacher",
    "one_hot_targets",
    "synthesize",
    "train_and_evaluate",
    "zskd_and_evaluate",
]
