"""jaxinv: data-free knowledge transfer in JAX.

Synthesise inputs that stand in for a classifier's unseen training data (Data and Class
Impressions, CAKE), then use them to distil students, test their adversarial robustness,
craft universal adversarial perturbations and adapt to a new domain without the source data.
"""

from jaxinv import attacks
from jaxinv.data import load_dataset
from jaxinv.pipeline import run
from jaxinv.synthesis import synthesize
from jaxinv.synthesis.cake import cake_method
from jaxinv.synthesis.impressions import impressions_method
from jaxinv.synthesis.method import SynthesisMethod, group_gradients, grouped_pixel_step
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.tasks.adapt import adapt
from jaxinv.tasks.distill import distill, distill_and_evaluate
from jaxinv.tasks.robustness import evaluate_robustness
from jaxinv.teacher import Teacher, from_module, load_teacher
from jaxinv.train import fit, train_and_evaluate

__version__ = "0.2.0"

__all__ = [
    "SynthesisMethod",
    "Teacher",
    "TransferSet",
    "adapt",
    "attacks",
    "cake_method",
    "distill",
    "distill_and_evaluate",
    "evaluate_robustness",
    "fit",
    "from_module",
    "group_gradients",
    "grouped_pixel_step",
    "impressions_method",
    "load_dataset",
    "load_teacher",
    "run",
    "synthesize",
    "train_and_evaluate",
]
