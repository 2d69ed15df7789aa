"""Data from Model chains on CIFAR-10 (Benz et al., CVPR-W 2020, Table 1's VGG8 columns).

For an accelerator:

  jaxinv run dfm_cifar10.py:vgg8 --workdir runs/dfm_cifar10_vgg8
  jaxinv run dfm_cifar10.py:vgg8_robust --workdir runs/dfm_cifar10_vgg8_robust
  # minutes on 2 CPU cores, on the CIFAR-10 files present, to check the plumbing:
  jaxinv run dfm_cifar10.py:vgg8_smoke --workdir /tmp/dfm_cifar10_smoke

The chain is dfm.py's (jaxinv/tasks/chain.py): VGG8 (one conv per stage, BatchNorm) extracts
500,000 images per link by l2-PGD from natural-image backgrounds toward virtual logits, and a
fresh VGG8 learns them by the l2 distance of its logits. The robust origin is trained by l2-PGD
(ε = 0.5, 10 steps of 2.5 ε / 10: the common CIFAR-10 l2 radius; the paper states none).

Backgrounds: the paper uses MS-COCO, which jaxinv does not ship; CIFAR-100 (tensorflow-datasets
`cifar100`, natural images whose classes are disjoint from CIFAR-10's) stands in for it. Any
dataset of 32x32 colour images can be named in `synthesis.background`. The smoke variant takes
its backgrounds from the CIFAR-10 test file, the only other colour images in shared/data: it
checks the plumbing, not the method.

The paper states neither the extraction's ε nor its steps: dfm.py's MNIST choice (ε = 3 on
28x28, benchmarks/dfm_epsilon.py) is carried over at the same root-mean-square change per
pixel, ε = 3 sqrt(3072 / 784) ≈ 5.9, with 50 steps. Under attack the models are scored at the
l2 radii usual for CIFAR-10, {0, 0.25, 0.5, 1}. The teacher trains 200 epochs of SGD; DtM 40
epochs of Adam per link (500,000 images; the paper does not say).

Data: with JAXINV_DATA_DIR set, CIFAR-10 comes from the npz files (4,000 training images, a
JPEG test set; see zskd_cifar10.py); unset it and point tfds_data_dir at prepared
tensorflow-datasets `cifar10` and `cifar100` for the real sets.
"""

import math

import ml_collections

from jaxinv.experiment_configs import load_sibling

# Table 1's VGG8 columns: the test accuracy of M0..M5.
_PAPER = {"vgg8": (92.2, 89.4, 80.1, 66.8, 52.5, 27.5),
          "vgg8_robust": (87.0, 88.1, 82.5, 71.7, 58.7, 44.8)}
_CIFAR_AUGMENT = dict(scale=0.0, translate=0.125, rotate_degrees=0.0, hflip=True)
_NO_AUGMENT = dict(scale=0.0, translate=0.0, rotate_degrees=0.0, hflip=False)
_ROBUST_EPS = 0.5


def get_config(arg: str = "vgg8") -> ml_collections.ConfigDict:
    """`arg`: vgg8 or vgg8_robust, optionally with _smoke."""
    smoke = arg.endswith("_smoke")
    origin = arg.removesuffix("_smoke")
    if origin not in _PAPER:
        raise ValueError(f"Unknown dfm_cifar10 config {arg!r}; use one of {sorted(_PAPER)}, "
                         "optionally with _smoke.")
    config = load_sibling(__file__, "dfm.py", "smoke" if smoke else "mnist_paper")
    config.dataset = "cifar10"
    config.tuned_for = "cifar10"
    config.paper = {"dataset": "cifar10", "chain": _PAPER[origin]}
    teacher_batch, epochs = 128, 200
    config.teacher = ml_collections.ConfigDict(dict(
        model="vgg8", train_limit=256 if smoke else None, seed=0,
        batch_size=32 if smoke else teacher_batch,
        num_steps=8 if smoke else epochs * 50000 // teacher_batch,
        checkpoint_every=8 if smoke else 2000, log_every=4 if smoke else 100,
        eval_batch_size=1000,
        optimizer=dict(name="sgd", learning_rate=0.05, schedule="cosine", weight_decay=5e-4,
                       momentum=0.9),
        augment=_NO_AUGMENT if smoke else _CIFAR_AUGMENT))
    if origin == "vgg8_robust":
        config.teacher.adversarial = ml_collections.ConfigDict(dict(
            attack="pgd", norm="l2", eps=_ROBUST_EPS, num_steps=2 if smoke else 10,
            ramp_steps=4 if smoke else 5 * 50000 // teacher_batch))
    config.synthesis.update(dict(
        background="cifar10" if smoke else "cifar100",
        background_split="test" if smoke else "train",
        epsilon=3.0 * math.sqrt(32 * 32 * 3 / (28 * 28))))
    config.distill.student = "vgg8"
    if not smoke:
        config.distill.update(dict(num_steps=40 * config.synthesis.num_examples // 128,
                                   checkpoint_every=2000))
    config.chain.eps = (0.0, 0.25, 0.5, 1.0)
    return config
