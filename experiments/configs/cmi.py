"""Contrastive Model Inversion (Fang et al., IJCAI 2021) on the BatchNorm CNN: BN CNN -> half.

  jaxinv run cmi.py:mnist --workdir runs/cmi_mnist
  jaxinv run cmi.py:fashion_mnist --workdir runs/cmi_fashion_mnist
  jaxinv run cmi.py:cifar10 --workdir runs/cmi_cifar10
  # Table 2's module cut-offs: without the contrastive loss, the decision-adversarial loss, or
  # the generator (pixels optimised directly as deepinversion.py does, Adam 0.1)
  jaxinv run cmi.py:mnist_no_contrastive --workdir runs/cmi_mnist_no_contrastive
  jaxinv run cmi.py:mnist_no_adv --workdir runs/cmi_mnist_no_adv
  jaxinv run cmi.py:mnist_no_generator --workdir runs/cmi_mnist_no_generator
  # Seconds, for tests:
  jaxinv run cmi.py:smoke --workdir /tmp/cmi_smoke

The reference settings (the CMI code base, zju-vipa/DataFree, WRN-40-2 -> WRN-16-1 on
CIFAR-10): batches of 256, a fresh generator (latent 256, width 128) and 200 Adam steps
(1e-3, β 0.5, 0.999) per batch; weights BN 1, class 1, adversarial 0.5, contrastive 0.8 at
τ = 0.1; a bank of 40,960 features with 4,096 negatives; 400 student steps per batch. Sized
for 2 CPU cores: 5,000 images (50 batches of 100; deepinversion.py's budget), 100 generator
steps of width 64 per batch, a bank of 5,000 features with 1,024 negatives, 40 student steps
per batch (Adam 1e-3); the final student takes deepinversion.py's 2,000 Adam steps.
"""

import ml_collections

from jaxinv.experiment_configs import load_sibling

_ABLATIONS = {"": {}, "_no_contrastive": {"contrastive": 0.0}, "_no_adv": {"adv": 0.0},
              "_no_generator": {}}


def get_config(arg: str = "mnist") -> ml_collections.ConfigDict:
    """`arg`: mnist, fashion_mnist, cifar10 or smoke, optionally with _no_contrastive, _no_adv
    or _no_generator (Table 2's module cut-offs)."""
    ablation = next((suffix for suffix in _ABLATIONS if suffix and arg.endswith(suffix)), "")
    arg = arg.removesuffix(ablation)
    config = load_sibling(__file__, "deepinversion.py", arg)
    config.distill.references = ()
    smoke = arg == "smoke"
    config.synthesis = ml_collections.ConfigDict(dict(
        method="cmi", num_per_class=4 if smoke else 500, batch_size=10 if smoke else 100,
        num_steps=20 if smoke else 100, latent_dim=32 if smoke else 256,
        generator_width=32 if smoke else 64, learning_rate=1e-2 if smoke else 1e-3,
        weights={"bn": 1.0, "cls": 1.0, "adv": 0.5, "contrastive": 0.8}, temperature=0.1,
        bank_size=40 if smoke else 5000, num_negatives=16 if smoke else 1024,
        head_dim=32 if smoke else 256, flip=config.synthesis.flip,
        student=config.distill.student,
        student_steps=3 if smoke else 40, student_learning_rate=1e-3,
        generator=ablation != "_no_generator", pixel_learning_rate=0.1,
        checkpoint_every=2 if smoke else 5, seed=0))
    config.synthesis.weights.update(_ABLATIONS[ablation])
    return config
