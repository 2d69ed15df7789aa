"""SpaceshipNet (Yu et al., CVPR 2023) on the BatchNorm CNN teachers, and the paper's CIFAR runs.

  jaxinv run spaceshipnet.py:mnist --workdir runs/spaceshipnet_mnist
  jaxinv run spaceshipnet.py:fashion_mnist --workdir runs/spaceshipnet_fashion_mnist
  jaxinv run spaceshipnet.py:cifar10 --workdir runs/spaceshipnet_cifar10
  # the ablations, without channel-wise feature exchange (p = 0) or without mSARC:
  jaxinv run spaceshipnet.py:mnist_no_cfe --workdir runs/spaceshipnet_mnist_no_cfe
  jaxinv run spaceshipnet.py:mnist_no_msarc --workdir runs/spaceshipnet_mnist_no_msarc
  # Table E at CPU scale: 50, 250, 500, 1,000 or 2,500 optimised images (epochs of 50) on the
  # CIFAR-10 teacher, the student's 2,000 steps fixed, next to KD on as many real images:
  jaxinv run spaceshipnet.py:cifar10_images_250 --workdir runs/spaceshipnet_cifar10_images_250
  # the authors' code where it departs from the supplement (spaceshipnet.py's docstring):
  jaxinv run spaceshipnet.py:mnist_code --workdir runs/spaceshipnet_mnist_code
  # the pool distilled afterwards, as deepinversion.py and cmi.py distil their sets, instead
  # of the online student (given a copy of a finished run's synthesis/ folder in its workdir,
  # it reuses that pool; `python benchmarks/record.py spaceshipnet_mnist_pool_kd` does so):
  jaxinv run spaceshipnet.py:mnist_pool_kd --workdir runs/spaceshipnet_mnist_pool_kd
  # the paper's ResNet-34 -> ResNet-18 runs, for an accelerator, and their smoke variants:
  jaxinv run spaceshipnet.py:cifar10_paper --workdir runs/spaceshipnet_cifar10_paper
  jaxinv run spaceshipnet.py:cifar100_paper --workdir runs/spaceshipnet_cifar100_paper
  jaxinv run spaceshipnet.py:cifar10_paper_smoke --workdir /tmp/spaceshipnet_cifar10_smoke
  # Seconds, for tests:
  jaxinv run spaceshipnet.py:smoke --workdir /tmp/spaceshipnet_smoke

Seeds: the student is trained inside the synthesis loop, so a seed is a whole run:
`--config.synthesis.seed=s`.

The supplement's settings: 200 epochs; per epoch 200 generator steps (Adam 0.1, β 0.5, 0.999,
cosine to 0 over the run) on 256 latents, then 2,000 student steps of 256 pooled, exchanged,
decoded images (SGD 0.1, momentum 0.9, weight decay 1e-4); weights class 0.5, BN 1, KL 900,
mSARC 1; τ = 30; p = 0.7. Sized for 2 CPU cores as deepinversion.py and cmi.py are: 5,000
optimised images (50 epochs of 100), 100 generator steps of width 64 per epoch, and the
student's 2,000 steps (40 per epoch, batch 100) of those configs' final students, on the
same teachers and students.
"""

import ml_collections

from jaxinv.experiment_configs import load_sibling

_VARIANTS = {"": {}, "_no_cfe": {"exchange_probability": 0.0}, "_no_msarc": {},
             "_code": {"generator_schedule": "restart", "generator_learning_rate": 1e-3,
                       "exchange_partner": "reversed", "exchange_per_batch": True,
                       "kl_reduction": "class_mean"},
             "_pool_kd": {}}
# Table E: optimised images (epochs of TABLE_E_BATCH latents each) -> the supplement's student
# accuracy on them and with KD on as many real images (ResNet-34 -> ResNet-18, CIFAR-10).
_TABLE_E_PAPER = {50: (91.23, 24.27), 250: (93.84, 36.48), 500: (94.50, 42.80),
                  1000: (94.92, 61.78), 2500: (95.21, 80.73)}
TABLE_E_IMAGES = tuple(_TABLE_E_PAPER)
TABLE_E_BATCH = 50
# dataset -> (teacher, student, the supplement's student accuracy: Table E's 51,200 optimised
# images on CIFAR-10, Table D's random 50 % exchange on CIFAR-100)
_PAPER = {"cifar10": ("resnet34", "resnet18", 95.39), "cifar100": ("resnet34", "resnet18", 77.41)}


def get_config(arg: str = "mnist") -> ml_collections.ConfigDict:
    """`arg`: mnist, fashion_mnist, cifar10 or smoke, optionally with _no_cfe, _no_msarc,
    _code or _pool_kd; cifar10_images_<n> for n in TABLE_E_IMAGES; or cifar10_paper /
    cifar100_paper, optionally with _smoke."""
    if arg.startswith("cifar10_images_"):
        return _table_e_config(arg.removeprefix("cifar10_images_"))
    if arg.removesuffix("_smoke").endswith("_paper"):
        return _paper_config(arg.removesuffix("_smoke").removesuffix("_paper"),
                             arg.endswith("_smoke"))
    variant = next((suffix for suffix in _VARIANTS if suffix and arg.endswith(suffix)), "")
    base = arg.removesuffix(variant)
    config = load_sibling(__file__, "deepinversion.py", base)
    smoke = base == "smoke"
    student = config.distill.student
    config.synthesis = _synthesis_block(
        num_epochs=3 if smoke else 50, batch_size=10 if smoke else 100,
        generator_steps=6 if smoke else 100, student_steps=4 if smoke else 40,
        latent_dim=16 if smoke else 256, generator_width=16 if smoke else 64, student=student)
    config.synthesis.update(_VARIANTS[variant])
    if variant == "_no_msarc":
        config.synthesis.weights.msarc = 0.0
    if variant == "_pool_kd":
        # The pool distilled afterwards as the other methods' sets are, by deepinversion.py's
        # distill block: tells the images' worth apart from the online student's training.
        config.task = "distill"
        return config
    config.task = "synthesis_student"
    config.synthesis_student = ml_collections.ConfigDict(dict(
        cam_limit=200 if smoke else 2000, eval_batch_size=1000))
    del config.distill
    return config


def _table_e_config(images: str) -> ml_collections.ConfigDict:
    """cifar10 with `images` optimised images in epochs of 50, the student's steps spread over
    them so that their total stays 2,000; and KD on as many real training images."""
    if not images.isdigit() or int(images) not in TABLE_E_IMAGES:
        raise ValueError(f"Unknown Table E size {images!r}; use one of {TABLE_E_IMAGES}.")
    distill_block = load_sibling(__file__, "deepinversion.py", "cifar10").distill
    config = get_config("cifar10")
    num_epochs = int(images) // TABLE_E_BATCH
    config.synthesis.update(num_epochs=num_epochs, batch_size=TABLE_E_BATCH,
                            student_steps=distill_block.num_steps // num_epochs,
                            checkpoint_every=max(1, num_epochs // 10))
    distill_block.references = ()
    # A batch of at most the real images, split evenly over 8 devices (the tests' and a TPU
    # host's).
    distill_block.batch_size = min(distill_block.batch_size, int(images) // 8 * 8)
    student, real_images_student = _TABLE_E_PAPER[int(images)]
    config.paper = {"dataset": "cifar10", "student": student,
                    "real_images_student": real_images_student}
    config.synthesis_student.real_images = int(images)
    config.synthesis_student.real_distill = distill_block
    return config


def _synthesis_block(*, num_epochs, batch_size, generator_steps, student_steps, latent_dim,
                     generator_width, student) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        method="spaceshipnet", num_epochs=num_epochs, batch_size=batch_size,
        generator_steps=generator_steps, student_steps=student_steps, latent_dim=latent_dim,
        generator_width=generator_width, generator_learning_rate=0.1,
        generator_schedule="cosine",
        weights={"cls": 0.5, "bn": 1.0, "kl": 900.0, "msarc": 1.0}, temperature=30.0,
        exchange_probability=0.7, exchange_partner="random", exchange_per_batch=False,
        kl_reduction="batchmean", student=student,
        student_optimizer=dict(name="sgd", learning_rate=0.1, schedule="cosine", momentum=0.9,
                               weight_decay=1e-4),
        checkpoint_every=1 if num_epochs < 10 else 5, seed=0))


def _paper_config(dataset: str, smoke: bool) -> ml_collections.ConfigDict:
    """ResNet-34 -> ResNet-18 on CIFAR-10 or CIFAR-100: 200 epochs x 2,000 KD iterations."""
    if dataset not in _PAPER:
        raise ValueError(f"Unknown SpaceshipNet paper config {dataset!r}; use one of "
                         f"{sorted(_PAPER)}, optionally with _smoke.")
    teacher, student, paper = _PAPER[dataset]
    config = ml_collections.ConfigDict()
    config.dataset = dataset
    config.tuned_for = dataset
    config.image_size = 32
    config.teacher_workdir = ""
    config.paper = {"dataset": dataset, "student": paper}
    # CAKE's CIFAR ResNet-34 recipe, so that both runs share one teacher in the store; the
    # smoke teacher is a WRN-10-1, whose stages are marked (CAKE's smoke AlexNet has none).
    config.teacher = load_sibling(__file__, "cake_cifar10.py",
                                  "smoke" if smoke else "resnet34_resnet18").teacher
    config.teacher.model = "wrn10_1" if smoke else teacher
    config.synthesis = _synthesis_block(
        num_epochs=2 if smoke else 200, batch_size=8 if smoke else 256,
        generator_steps=2 if smoke else 200, student_steps=2 if smoke else 2000,
        latent_dim=16 if smoke else 256, generator_width=16 if smoke else 128,
        student="wrn10_1_half" if smoke else student)
    config.task = "synthesis_student"
    config.synthesis_student = ml_collections.ConfigDict(dict(
        cam_limit=100 if smoke else None, eval_batch_size=500))
    return config
