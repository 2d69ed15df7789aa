"""CAKE (Braun, Mundt and Kersting, AISTATS 2024): LeNet-5 -> LeNet-5-half on CAKE samples.

  # The poster's LeNet-5 -> LeNet-5-half (poster: MNIST 98.4 ± 0.18, Fashion-MNIST 76.5 ± 1.01)
  jaxinv run cake.py:mnist --workdir runs/cake_mnist
  jaxinv run cake.py:fashion_mnist --workdir runs/cake_fashion_mnist
  # Ablations on 6,000 samples: all parts (the reference), without the contrastive term,
  # without noise (one step size for every set, no Langevin term), without the TV prior; and
  # the poster's explicit Langevin variant:
  jaxinv run cake.py:mnist_all_parts --workdir runs/cake_mnist_all_parts
  jaxinv run cake.py:mnist_no_contrastive --workdir runs/cake_mnist_no_contrastive
  jaxinv run cake.py:mnist_no_noise --workdir runs/cake_mnist_no_noise
  jaxinv run cake.py:mnist_no_tv --workdir runs/cake_mnist_no_tv
  jaxinv run cake.py:mnist_langevin --workdir runs/cake_mnist_langevin
  # The authors' student optimiser (SGD 0.5; it diverges at these sizes):
  jaxinv run cake.py:mnist_authors_student --workdir runs/cake_mnist_authors_student
  # CAKE against Data Impressions: CAKE samples, zskd.py's sample count and distillation
  jaxinv run cake.py:mnist_di_protocol --workdir runs/cake_mnist_di_protocol
  # The cross-type matrix on MNIST, one row per teacher type (students: all four types):
  jaxinv run cake.py:types_mlp --workdir runs/cake_types_mlp
  jaxinv run cake.py:types_lenet5 --workdir runs/cake_types_lenet5
  jaxinv run cake.py:types_resnet8 --workdir runs/cake_types_resnet8
  jaxinv run cake.py:types_vit --workdir runs/cake_types_vit
  # The authors' sizes (512 sets of 500 samples), for an accelerator; seconds, for tests:
  jaxinv run cake.py:mnist_paper --workdir runs/cake_mnist_paper
  jaxinv run cake.py:smoke --workdir /tmp/cake_smoke

The teacher is zskd.py's (the same cached LeNet-5), so CAKE and Data Impressions distil the
same model. Student seeds: --config.distill.num_seeds=3 (the recorded runs).

The authors' settings (ml-research/CAKE, conf/dataset/mnist.yaml, conf/config.yaml): rows of
10 distinct classes, 256 SGD steps per sample, η from 0.1 decaying 10⁴-fold across the sets,
weights cls 1e3, contrastive 1e-3, TV 1e7; the student learns the teacher's softmax (T = 1) by
SGD 0.5, momentum 0.9, weight decay 5e-4, one-cycle, 30 epochs of batch 256, no augmentation.
Departure: at 0.5 the LeNet-5-half student diverges when the one-cycle schedule nears its peak
and ends at chance; jaxinv's student takes SGD at 0.05 (otherwise the authors' schedule),
chosen on a validation split by benchmarks/cake_student_optimizer.py (`_authors_student`
keeps 0.5).
In jaxinv's units (see jaxinv/synthesis/cake.py) η = 0.1 σ² / 50 with the dataset's pixel std
σ, and the start N(0, 1) is N(μ, σ²) on [0, 1] pixels.

Sized for 2 CPU cores: 48 sets of 50 rows (24,000 samples, ZSKD's MNIST count; the authors make
512 sets, 256,000 samples) and 30 epochs of them (2,800 steps). The ablation makes 12 sets
(6,000 samples), its reference `_all_parts` included. The cross-type matrix, whose
ResNet-8 and ViT teachers cost 7-12 times LeNet-5's multiply-adds, makes 10 sets (5,000
samples) of 128 steps per teacher.
"""

import ml_collections

from jaxinv.experiment_configs import load_sibling

_PAPER = {"mnist": {"cake": 98.4, "cake_sd": 0.18},
          "fashion_mnist": {"cake": 76.5, "cake_sd": 1.01}}
# The pixel mean and std of each training set, the authors' input normalisation.
_PIXEL_STATS = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}
_ROWS_PER_SET = 50
_ABLATIONS = ("_all_parts", "_no_contrastive", "_no_noise", "_no_tv", "_langevin")
_VARIANTS = (*_ABLATIONS, "_authors_student", "_di_protocol", "_paper")
# The authors' student optimiser, and jaxinv's, chosen on a validation split
# (benchmarks/cake_student_optimizer.py).
_AUTHORS_OPTIMIZER = dict(name="sgd", learning_rate=0.5, schedule="onecycle", weight_decay=5e-4,
                          momentum=0.9)
_OPTIMIZER = {**_AUTHORS_OPTIMIZER, "learning_rate": 0.05}
# The model types of the cross-type study (the poster's MLP, CNN, ResNet, ViT) and the teacher
# recipe of each in teacher.py; LeNet-5's is zskd.py's.
_TYPES = {"mlp": "mnist_mlp", "lenet5": "mnist_plain", "resnet8": "mnist_resnet8",
          "vit": "mnist_vit"}


def get_config(arg: str = "mnist") -> ml_collections.ConfigDict:
    """`arg`: smoke; mnist / fashion_mnist with an optional suffix: _all_parts,
    _no_contrastive, _no_noise, _no_tv, _langevin (the ablation's size), _di_protocol or
    _paper; or types_<mlp|lenet5|resnet8|vit>."""
    smoke = arg == "smoke"
    teacher_type = arg.removeprefix("types_") if arg.startswith("types_") else None
    variant = next((suffix for suffix in _VARIANTS if arg.endswith(suffix)), "")
    dataset = "mnist" if smoke or teacher_type else arg.removesuffix(variant)
    if dataset not in _PAPER or (teacher_type and teacher_type not in _TYPES):
        raise ValueError(f"Unknown cake config {arg!r}; use smoke, mnist / fashion_mnist "
                         f"with an optional suffix {', '.join(_VARIANTS)}, or types_<t> "
                         f"with t in {sorted(_TYPES)}.")
    zskd = load_sibling(__file__, "zskd.py", "smoke" if smoke else dataset)
    config = ml_collections.ConfigDict()
    config.dataset = dataset
    config.tuned_for = dataset
    config.image_size = 32
    config.teacher = zskd.teacher
    if teacher_type:
        config.teacher = load_sibling(__file__, "teacher.py", _TYPES[teacher_type])
        del config.teacher.dataset, config.teacher.image_size, config.teacher.num_classes
    config.teacher_workdir = ""
    config.paper = {"dataset": dataset, **_PAPER[dataset]}

    mean, std = _PIXEL_STATS[dataset]
    num_sets = {"smoke": 2, "_paper": 512}.get("smoke" if smoke else variant, 48)
    if teacher_type:
        num_sets = 10
    if variant in _ABLATIONS:
        num_sets = 12
    rows_per_set = 8 if smoke else _ROWS_PER_SET
    if variant == "_di_protocol":
        # ZSKD's transfer-set size: 24,000 (MNIST) or 48,000 (Fashion-MNIST).
        num_sets = zskd.synthesis.num_per_class * 10 // (rows_per_set * 10)
    config.synthesis = ml_collections.ConfigDict(dict(
        method="cake", group_size=10, rows_per_set=rows_per_set, num_sets=num_sets,
        num_steps=16 if smoke else 128 if teacher_type else 256,
        step_size=0.1 * std**2 / rows_per_set,
        step_decay_decades=0.0 if variant == "_no_noise" else 4.0,
        langevin=variant == "_langevin",
        weights={"cls": 1e3, "contrastive": 0.0 if variant == "_no_contrastive" else 1e-3,
                 "tv": 0.0 if variant == "_no_tv" else 1e7},
        init_mean=mean, init_std=std,
        chunk_size=80 if smoke else 2000, steps_per_call=8 if smoke else 64, seed=0))

    config.task = "distill"
    if variant == "_di_protocol":
        config.distill = zskd.distill
        config.distill.references = ()
        return config
    num_samples = num_sets * rows_per_set * 10
    num_steps = 20 if smoke else 30 * num_samples // 256
    config.distill = ml_collections.ConfigDict(dict(
        student=teacher_type or "lenet5_half", seed=0, num_seeds=1,
        extra_students=tuple(t for t in _TYPES if t != teacher_type) if teacher_type else (),
        batch_size=64 if smoke else 256,
        num_steps=num_steps,
        # The teacher's softmax at T = 1 as soft labels.
        temperature=1.0, scale_by_t2=False,
        checkpoint_every=10 if smoke else 500, log_every=10 if smoke else 100,
        eval_batch_size=1000,
        optimizer=_AUTHORS_OPTIMIZER if variant == "_authors_student" else _OPTIMIZER,
        augment=dict(scale=0.0, translate=0.0, rotate_degrees=0.0, hflip=False),
        references=()))
    return config
