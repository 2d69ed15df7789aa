"""Class-incremental learning with Data Impressions and dual distillation (TPAMI 2021, §4.3).

One run per dataset and seed: LeNet-5 on classes 0-1, then four steps of two new classes each;
at every step the DI method (new-class model, 2,000 DIs of the old classes, double
distillation into one model) and the baselines of Fig. 8 (fine-tuning, fixed representation,
LwF, joint training on all real data).

  jaxinv run continual.py:mnist --workdir runs/continual_mnist_seed0
  jaxinv run continual.py:fashion_mnist --workdir runs/continual_fashion_mnist_seed0
  jaxinv run continual.py:mnist --workdir runs/continual_mnist_seed1 --config.seed=1
  # CIFAR-100 with ResNet-32, steps of 20 classes, the paper's SGD schedule (an accelerator):
  jaxinv run continual.py:cifar100 --workdir runs/continual_cifar100
  # Seconds (smoke) or a CPU minute (cifar100_smoke, mock data in tests):
  jaxinv run continual.py:smoke --workdir /tmp/continual_smoke

`python benchmarks/record.py continual_mnist continual_fashion_mnist` runs three seeds of each.
`--config.seed` reseeds the models, the batches and the DIs; the class order stays 0, 1, ..., 9.

Sized for 2 CPU cores: about 10 epochs per stage (1,000 steps of 128 on two classes' ~12,000
images; joint training as many epochs of its larger set), 200 synthesis steps per DI (the
paper: 1,500) from 8x8 noise with zskd.py's pixel prior. Adam 1e-3 with cosine decay for
every stage (the paper's SGD schedule is for CIFAR-100 and kept in `cifar100`). The paper's
lower learning rate for the last consolidation (1e-3 instead of 1e-2) is not reproduced.
"""

import ml_collections

_DIGIT_AUGMENT = dict(scale=0.1, translate=0.08, rotate_degrees=10.0, hflip=False)
_NO_AUGMENT = dict(scale=0.0, translate=0.0, rotate_degrees=0.0, hflip=False)


def _fit(num_steps: int, batch_size: int, optimizer: dict, augmentation: dict,
         smoke: bool) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        batch_size=batch_size, num_steps=num_steps,
        checkpoint_every=max(num_steps // 2, 1) if smoke else 500,
        log_every=10 if smoke else 100, optimizer=optimizer, augment=augmentation))


def get_config(arg: str = "mnist") -> ml_collections.ConfigDict:
    """`arg`: mnist, fashion_mnist, cifar100, cifar100_smoke or smoke."""
    if arg not in ("mnist", "fashion_mnist", "cifar100", "cifar100_smoke", "smoke"):
        raise ValueError(f"Unknown continual config {arg!r}; use mnist, fashion_mnist, "
                         "cifar100, cifar100_smoke or smoke.")
    smoke = arg.endswith("smoke")
    cifar = arg.startswith("cifar100")
    seed = ml_collections.FieldReference(0)
    config = ml_collections.ConfigDict()
    config.seed = seed
    config.dataset = "cifar100" if cifar else "mnist" if arg == "smoke" else arg
    config.image_size = 32
    if cifar:
        step_size, num_steps = (20, 5) if not smoke else (2, 2)
        # The smoke variant checks the data path and the five methods, not ResNet-32.
        model, batch_size = ("resnet32", 128) if not smoke else ("resnet8", 16)
        # §4.3.2: SGD, momentum 0.9, weight decay 5e-4; 0.1 for the new-class models, 0.01 to
        # consolidate; the paper's 500 epochs with a step decay are a cosine schedule here.
        train_steps = 500 * 10000 // 128 if not smoke else 8
        consolidate_steps = 500 * 12400 // 128 if not smoke else 8
        sgd = dict(name="sgd", schedule="cosine", momentum=0.9, weight_decay=5e-4)
        train_optimizer = {**sgd, "learning_rate": 0.1}
        consolidate_optimizer = {**sgd, "learning_rate": 0.01}
        augmentation = dict(scale=0.1, translate=0.1, rotate_degrees=10.0, hflip=True)
        di_budget = 2400 if not smoke else 32
        synthesis_steps, chunk = (1500, 2400) if not smoke else (4, 16)
    else:
        step_size, num_steps = 2, 5 if not smoke else 3
        model, batch_size = "lenet5", 128 if not smoke else 64
        train_steps = 1000 if not smoke else 40
        consolidate_steps = 1000 if not smoke else 40
        adam = dict(name="adam", learning_rate=1e-3, schedule="cosine", weight_decay=0.0)
        train_optimizer = consolidate_optimizer = adam
        augmentation = _NO_AUGMENT if smoke else _DIGIT_AUGMENT
        di_budget = 2000 if not smoke else 64
        synthesis_steps, chunk = (200, 1000) if not smoke else (20, 32)
    steps = tuple(tuple(range(k * step_size, (k + 1) * step_size)) for k in range(num_steps))

    config.teacher = ml_collections.ConfigDict(dict(
        model=model, classes=steps[0], seed=seed, train_limit=None,
        batch_size=batch_size, num_steps=train_steps, checkpoint_every=500 if not smoke else 20,
        log_every=100 if not smoke else 10, eval_batch_size=1000, optimizer=train_optimizer,
        augment=_NO_AUGMENT if smoke else augmentation))
    config.teacher_workdir = ""
    config.synthesis = ml_collections.ConfigDict(dict(
        method="impressions", kind="dirichlet", betas=(1.0, 0.1), floor=1e-3,
        num_per_class=di_budget // step_size, temperature=20.0, num_steps=synthesis_steps,
        learning_rate=0.05, schedule="linear", pixel_l2=0.0 if cifar else 1e-3,
        init_resolution=None if cifar else 8, chunk_size=chunk,
        steps_per_call=min(50, synthesis_steps), seed=seed))
    config.task = "continual"
    config.continual = ml_collections.ConfigDict(dict(
        steps=steps, methods=("dual_distillation", "finetune", "fixed_representation", "lwf",
                              "joint"),
        di_budget=di_budget,
        train=_fit(train_steps, batch_size, train_optimizer, augmentation, smoke),
        consolidate=_fit(consolidate_steps, batch_size, consolidate_optimizer, augmentation,
                         smoke),
        lwf_temperature=2.0, lwf_weight=1.0, seed=seed, eval_batch_size=1000))
    return config
