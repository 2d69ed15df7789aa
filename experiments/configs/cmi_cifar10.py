"""Table 1 of the CMI paper on CIFAR-10 (Fang et al., IJCAI 2021): configs for an accelerator.

  jaxinv run cmi_cifar10.py:wrn40_2_wrn16_1 --workdir runs/cmi_cifar10_wrn40_2_wrn16_1
  jaxinv run cmi_cifar10.py:wrn40_2_wrn16_1_adi --workdir runs/adi_cifar10_wrn40_2_wrn16_1
  jaxinv run cmi_cifar10.py:wrn40_2_wrn16_1_deepinversion --workdir runs/di_cifar10_wrn40_2_wrn16_1
  # likewise resnet34_resnet18, vgg11_resnet18, wrn40_2_wrn40_1, wrn40_2_wrn16_2; and a
  # minute on 2 CPU cores, for tests (BN CNN -> BN CNN-half, a few steps):
  jaxinv run cmi_cifar10.py:wrn40_2_wrn16_1_smoke --workdir /tmp/cmi_cifar10_smoke

The reference settings (the CMI code base, zju-vipa/DataFree; the paper tunes WRN-40-2 ->
WRN-16-1 only): teachers by SGD 0.1, momentum 0.9, weight decay 5e-4, cosine, 200 epochs of
128 with crops and flips. CMI: 200 rounds of 256 images (51,200), a fresh generator (latent
256) and 200 Adam steps (1e-3, β 0.5, 0.999) per round, weights BN 1, class 1, adversarial 0.5,
contrastive 0.8 at τ = 0.1, a bank of 40,960 features and 4,096 negatives, flips on.
DeepInversion and ADI: the same 51,200 images, 1,000 Adam steps (0.1) per batch of 256,
weights BN 10, class 1, TV 1e-3, a roll of up to 4 pixels and a flip, competition 1 for ADI.
The student: KL at τ = 20, SGD 0.1, momentum 0.9, weight decay 1e-4, cosine, 80,000 steps of
256 (the reference's 200 rounds x 400 steps) with crops and flips.

Departures: the reference trains the student online, interleaved with synthesis, and reports
that student; jaxinv's rounds train an inner student the same way (400 steps a round, by Adam
1e-3 where the reference uses its SGD) to drive the adversarial terms, and the reported student
is then distilled afresh on the whole pool with the reference's student settings.

Data: with JAXINV_DATA_DIR set, CIFAR-10 comes from the npz files (the first 4,000 training
images and a lossy JPEG test set; see zskd_cifar10.py); for the real sets unset it and point
tfds_data_dir at a prepared tensorflow-datasets `cifar10`.
"""

import ml_collections

# pair -> (teacher, student, the paper's T., S., ADI and CMI test accuracies in %)
_PAIRS = {
    "resnet34_resnet18": ("resnet34", "resnet18", 95.70, 95.20, 93.26, 94.84),
    "vgg11_resnet18": ("vgg11", "resnet18", 92.25, 95.20, 90.36, 91.13),
    "wrn40_2_wrn16_1": ("wrn40_2", "wrn16_1", 94.87, 91.12, 83.04, 90.01),
    "wrn40_2_wrn40_1": ("wrn40_2", "wrn40_1", 94.87, 93.94, 86.85, 92.78),
    "wrn40_2_wrn16_2": ("wrn40_2", "wrn16_2", 94.87, 93.95, 89.72, 92.52),
}
_METHODS = ("cmi", "adi", "deepinversion")


def _parse(arg: str) -> tuple[str, str, bool]:
    smoke = arg.endswith("_smoke")
    rest = arg.removesuffix("_smoke")
    method = next((m for m in _METHODS[1:] if rest.endswith(f"_{m}")), "cmi")
    pair = rest.removesuffix(f"_{method}") if method != "cmi" else rest
    if pair not in _PAIRS:
        raise ValueError(f"Unknown cmi_cifar10 config {arg!r}; use one of {sorted(_PAIRS)}, "
                         "optionally with _adi or _deepinversion, then optionally _smoke.")
    return pair, method, smoke


def get_config(arg: str = "wrn40_2_wrn16_1") -> ml_collections.ConfigDict:
    """`arg`: <pair>[_adi|_deepinversion][_smoke], pairs as in _PAIRS."""
    pair, method, smoke = _parse(arg)
    teacher, student, paper_teacher, paper_student, paper_adi, paper_cmi = _PAIRS[pair]
    config = ml_collections.ConfigDict()
    config.dataset = "cifar10"
    config.tuned_for = "cifar10"
    config.image_size = 32
    config.teacher_workdir = ""
    if not smoke:
        config.paper = {"dataset": "cifar10", "teacher": paper_teacher,
                        "student_ce": paper_student}
        if method != "deepinversion":  # the paper reports ADI, not plain DeepInversion
            config.paper[method] = paper_adi if method == "adi" else paper_cmi
    student_model = "bn_cnn_half" if smoke else student
    config.teacher = ml_collections.ConfigDict(dict(
        model="bn_cnn" if smoke else teacher, train_limit=256 if smoke else None, seed=0,
        batch_size=32 if smoke else 128, num_steps=4 if smoke else 200 * 50000 // 128,
        checkpoint_every=4 if smoke else 2000, log_every=2 if smoke else 100,
        eval_batch_size=1000,
        optimizer=dict(name="sgd", learning_rate=0.1, schedule="cosine", weight_decay=5e-4,
                       momentum=0.9),
        augment=dict(scale=0.0, translate=0.125, rotate_degrees=0.0, hflip=True)))
    batch = 10 if smoke else 256
    num_per_class = 2 if smoke else 5120  # 200 rounds of 256
    if method == "cmi":
        config.synthesis = ml_collections.ConfigDict(dict(
            method="cmi", num_per_class=num_per_class, batch_size=batch,
            num_steps=4 if smoke else 200, latent_dim=16 if smoke else 256,
            generator_width=16 if smoke else 128, learning_rate=1e-3,
            weights={"bn": 1.0, "cls": 1.0, "adv": 0.5, "contrastive": 0.8}, temperature=0.1,
            bank_size=20 if smoke else 40960, num_negatives=8 if smoke else 4096,
            head_dim=16 if smoke else 256, flip=True, student=student_model,
            student_steps=2 if smoke else 400, student_learning_rate=1e-3, generator=True,
            pixel_learning_rate=0.1, checkpoint_every=2 if smoke else 5, seed=0))
    else:
        config.synthesis = ml_collections.ConfigDict(dict(
            method="deepinversion", num_per_class=num_per_class, batch_size=batch,
            num_steps=4 if smoke else 1000, learning_rate=0.1,
            weights={"bn": 10.0, "cls": 1.0, "tv": 1e-3, "l2": 0.0}, jitter=4, flip=True,
            competition=1.0 if method == "adi" else 0.0, student=student_model,
            student_steps=2 if smoke else 400, student_learning_rate=1e-3,
            chunk_size=20 if smoke else 2560, steps_per_call=4 if smoke else 100,
            checkpoint_every=2 if smoke else 10, seed=0))
    config.task = "distill"
    config.distill = ml_collections.ConfigDict(dict(
        student=student_model, seed=0, num_seeds=1, batch_size=8 if smoke else 256,
        num_steps=4 if smoke else 80000, temperature=20.0, scale_by_t2=True,
        checkpoint_every=4 if smoke else 2000, log_every=2 if smoke else 100,
        eval_batch_size=1000,
        optimizer=dict(name="sgd", learning_rate=0.1, schedule="cosine", weight_decay=1e-4,
                       momentum=0.9),
        augment=dict(scale=0.0, translate=0.125, rotate_degrees=0.0, hflip=True),
        references=(), diversity=not smoke))
    return config
