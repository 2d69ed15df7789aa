"""Source-free domain adaptation with Data Impressions and ADDA (TPAMI 2021, Tables 7 and 9).

One run per direction and seed: the ADDA LeNet trained on 1,800 USPS (or 2,000 MNIST)
training images sampled with the seed, 2,000 DIs of it (β ∈ {0.01, 0.1}), then ADDA on the DIs
and, for reference, on the real source images; all evaluated on the target's full test set.

  jaxinv run adapt.py:usps_mnist --workdir runs/adapt_usps_mnist_seed0
  jaxinv run adapt.py:mnist_usps --workdir runs/adapt_mnist_usps_seed0
  jaxinv run adapt.py:usps_mnist --workdir runs/adapt_usps_mnist_seed1 --config.seed=1
  # β ∈ {0.1, 1.0} instead (the §4.2.3 ablation):
  jaxinv run adapt.py:usps_mnist_high_beta --workdir runs/adapt_usps_mnist_high_beta_seed0
  # SVHN -> MNIST on the whole SVHN training set (tensorflow-datasets svhn_cropped, gray):
  jaxinv run adapt.py:svhn_mnist --workdir runs/adapt_svhn_mnist
  # The paper's sizes (10,000 source and adaptation steps, 1,500 synthesis steps), for an
  # accelerator: append _paper, e.g. adapt.py:usps_mnist_paper.
  # Seconds, for tests:
  jaxinv run adapt.py:smoke --workdir /tmp/adapt_smoke

`python benchmarks/record.py table7_usps_mnist table7_mnist_usps` runs three seeds of each
direction and records Table 7 in BENCHMARKS.md. `--config.seed` reseeds the sampling of both
domains, the source model, the DIs and the adaptation.

Sized for 2 CPU cores: 1,000 source-training steps (ADDA's code: 10,000; the loss is below
0.01 by step 600 on 1,800 images), 100 synthesis steps (the paper: 1,500; ADDA's LeNet takes
about 2 s per step for 2,000 DIs on 2 cores), 2,000 adaptation steps (ADDA's code: 10,000),
batch 128 per domain. ADDA's
settings otherwise: Adam 1e-3 for the source model, Adam 2e-4 with b1 0.5 for adaptation, the
discriminator on the 10-d logits as ADDA's own code does.
"""

import ml_collections

# Table 7 (and Table 9's "Ours" baselines) of the paper, target test accuracy in %.
_PAPER = {
    "usps_mnist": {"source_only": 57.3, "adda_real_source": 90.1,
                   "adda_data_impressions": 89.15},
    "mnist_usps": {"source_only": 76.5, "adda_real_source": 89.4, "adda_data_impressions": 91.0},
    "svhn_mnist": {"source_only": 61.2, "adda_real_source": 76.0, "adda_data_impressions": 86.6},
}
# Training images of the protocol of Long et al. (ICCV 2013): None is the whole set.
_SAMPLE = {"usps": 1800, "mnist": 2000, "svhn_gray": None}
_DIRECTIONS = {"usps_mnist": ("usps", "mnist"), "mnist_usps": ("mnist", "usps"),
               "svhn_mnist": ("svhn_gray", "mnist"), "smoke": ("usps", "mnist"),
               "svhn_mnist_smoke": ("svhn_gray", "mnist")}
_BETAS = {"": (0.01, 0.1), "_high_beta": (0.1, 1.0)}


def get_config(arg: str = "usps_mnist") -> ml_collections.ConfigDict:
    """`arg`: usps_mnist, mnist_usps or svhn_mnist, with an optional suffix _high_beta or
    _paper; or smoke, svhn_mnist_smoke."""
    paper_sizes = arg.endswith("_paper")
    name = arg.removesuffix("_paper")
    betas_suffix = "_high_beta" if name.endswith("_high_beta") else ""
    direction = name.removesuffix(betas_suffix)
    if direction not in _DIRECTIONS:
        raise ValueError(f"Unknown adapt config {arg!r}; use usps_mnist, mnist_usps or "
                         "svhn_mnist (optionally with _high_beta and/or _paper), smoke or "
                         "svhn_mnist_smoke.")
    smoke = direction.endswith("smoke")
    source, target = _DIRECTIONS[direction]
    seed = ml_collections.FieldReference(0)
    config = ml_collections.ConfigDict()
    config.seed = seed
    config.dataset = source
    config.image_size = 28  # both domains, as ADDA
    if direction in _PAPER and not betas_suffix:
        config.paper = {"dataset": source, **_PAPER[direction]}

    config.teacher = ml_collections.ConfigDict(dict(
        model="adda_lenet", seed=seed,
        train_limit=4096 if smoke else None, train_sample=None if smoke else _SAMPLE[source],
        batch_size=64 if smoke else 128,
        num_steps=60 if smoke else 10000 if paper_sizes else 1000,
        checkpoint_every=30 if smoke else 1000, log_every=10 if smoke else 100,
        eval_batch_size=1000,
        optimizer=dict(name="adam", learning_rate=1e-3, schedule="constant", weight_decay=0.0,
                       momentum=0.9),
        augment=dict(scale=0.0, translate=0.0, rotate_degrees=0.0, hflip=False)))
    config.teacher_workdir = ""

    config.synthesis = ml_collections.ConfigDict(dict(
        method="impressions", kind="dirichlet", betas=_BETAS[betas_suffix], floor=1e-3,
        num_per_class=16 if smoke else 200,  # 2,000 DIs per source model
        temperature=20.0,
        num_steps=20 if smoke else 1500 if paper_sizes else 100,
        learning_rate=0.05, schedule="linear", pixel_l2=0.0, init_resolution=None,
        chunk_size=160 if smoke else 2000, steps_per_call=10 if smoke else 50, seed=seed))

    config.task = "adapt"
    config.adapt = ml_collections.ConfigDict(dict(
        target=target, target_sample=256 if smoke else _SAMPLE[target],
        discriminator_input="logits",
        batch_size=64 if smoke else 128,
        num_steps=30 if smoke else 10000 if paper_sizes else 2000,
        checkpoint_every=15 if smoke else 500, log_every=10 if smoke else 100, seed=seed,
        optimizer=dict(name="adam", learning_rate=2e-4, b1=0.5, schedule="constant",
                       weight_decay=0.0),
        references=("real_source",), eval_batch_size=1000,
        tsne_points=64 if smoke else 500))
    return config
