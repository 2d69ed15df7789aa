"""jaxinv: data-free knowledge transfer in JAX.

Synthesise inputs that stand in for a classifier's unseen training data, then use them to
distil students, adapt to new domains, learn new classes and probe robustness.
"""

__version__ = "0.1.0"
