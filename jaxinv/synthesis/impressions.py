"""Data Impressions and Class Impressions: inputs optimised from noise to match soft targets.

Config (`synthesis` block, `method="impressions"`):
  kind: "dirichlet" (Data Impressions: targets ~ Dir(β·c_k) around the class similarity of
    the teacher's final layer) or "one_hot" (Class Impressions, Appendix A);
  betas, floor: the β mixture and the similarity floor of the Dirichlet targets;
  num_per_class: impressions per class;
  temperature, num_steps, learning_rate, schedule: eq. 2 and its Adam;
  pixel_l2: λ of a squared-L2 pixel prior (0 is the paper's objective);
  init_resolution: side of the uniform starting noise (None: pixel-wise, the paper's);
  procedure: "paper" (the default, the paper's Algorithm 1 on independent examples) or
    "released" (the authors' released code, :func:`released_procedure_method`), which also
    takes batch_size (impressions per batch, 100 in the code) and checkpoint_every (batches).

References:
  Nayak, Mopuri, Jain, Chakraborty, "Mining Data Impressions from Deep Models as Substitute
  for the Unavailable Training Data", TPAMI 2021, eq. 2, Algorithm 1 and Appendix A; Nayak et
  al., "Zero-Shot Knowledge Distillation in Deep Networks", ICML 2019; their released code,
  github.com/vcl-iisc/ZSKD (di_generation/, CIFAR-10 only).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxinv import losses, parallel
from jaxinv.synthesis import dirichlet
from jaxinv.synthesis.method import SynthesisMethod, group_gradients, grouped_pixel_step, pixels
from jaxinv.teacher import Teacher
from jaxinv.validation import is_count

SCHEDULES = ("linear", "cosine", "constant")
KINDS = ("dirichlet", "one_hot")
PROCEDURES = ("paper", "released")


def impressions_schedule(learning_rate: float, num_steps: int, schedule: str) -> optax.Schedule:
    """The learning-rate schedule of the synthesis Adam ("linear" decay in the paper's §4.1.3)."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}.")
    if schedule == "linear":
        return optax.linear_schedule(learning_rate, 0.0, num_steps)
    if schedule == "cosine":
        return optax.cosine_decay_schedule(learning_rate, num_steps)
    if schedule == "constant":
        return optax.constant_schedule(learning_rate)
    raise ValueError(f"Unknown schedule {schedule!r}; use one of {SCHEDULES}.")


def _check_init_resolution(init_resolution, image_shape) -> None:
    height, width, _ = image_shape
    if init_resolution is not None and not (is_count(init_resolution)
                                            and init_resolution <= min(height, width)):
        raise ValueError(f"init_resolution must be a whole number of pixels in [1, "
                         f"{min(height, width)}] (the teacher takes {height}x{width} images), "
                         f"got {init_resolution!r}; None starts from pixel-wise noise.")


def impressions_method(teacher: Teacher, *, temperature: float = 20.0, num_steps: int = 1500,
                       learning_rate: float = 0.05, schedule: str = "linear",
                       pixel_l2: float = 0.0, init_resolution: int | None = None,
                       name: str = "data_impressions",
                       micro_batch: int | None = None) -> SynthesisMethod:
    """x̄ = argmin_x CE(y, softmax(T(x)/τ)) + λ‖x‖² from noise, with Adam and a clip to [0, 1].

    With Dirichlet targets this synthesises Data Impressions; with one-hot targets, Class
    Impressions (Appendix A: CE to a one-hot target is logit maximisation at τ). Needs only
    input gradients, so any differentiable teacher works. Inputs: {"targets": (n, K)}.

    Args:
      teacher: the frozen classifier; images (H, W, C) in [0, 1].
      temperature: τ > 0 (the paper uses 20).
      num_steps: Adam iterations per example (the paper uses 1500).
      learning_rate: initial Adam step size on pixels in [0, 1].
      schedule: "linear" (decay to 0, as the paper), "cosine" or "constant".
      pixel_l2: λ ≥ 0, a squared-L2 prior on the pixels of each impression; not in the paper
        (λ = 0). It pulls impressions of a digit teacher from mid-grey saturated noise towards a
        dark background like the digits the teacher saw (BENCHMARKS.md, appendix).
      init_resolution: R, the side of the uniform noise an impression starts from, resized
        bilinearly to the teacher's input (smoother noise, still in [0, 1]); None is the
        paper's pixel-wise noise.
      name: recorded in the TransferSet ("data_impressions" or "class_impressions").
      micro_batch: see :func:`jaxinv.synthesis.method.group_gradients`.

    References:
      Nayak et al., TPAMI 2021, eq. 2 and Algorithm 1.
    """
    if not temperature > 0:
        raise ValueError(f"temperature τ must be > 0, got {temperature}; the paper uses 20.")
    if not pixel_l2 >= 0:
        raise ValueError(f"pixel_l2 λ must be ≥ 0, got {pixel_l2}; 0 is the paper's objective.")
    height, width, channels = teacher.image_shape
    _check_init_resolution(init_resolution, teacher.image_shape)
    noise_shape = (height, width) if init_resolution is None else (init_resolution,) * 2

    def init_params(rng: jax.Array, inputs: dict) -> jax.Array:
        num = inputs["targets"].shape[0]
        noise = jax.random.uniform(rng, (num, *noise_shape, channels))
        if noise_shape == (height, width):
            return noise
        # Bilinear weights are convex, so the smooth noise stays in [0, 1].
        return jax.image.resize(noise, (num, height, width, channels), "bilinear")

    def loss_fn(teacher_variables, images: jax.Array, inputs: dict, rng: jax.Array):
        del rng
        logits = teacher.logits(images, teacher_variables)
        return (losses.soft_cross_entropy(logits, inputs["targets"], temperature).sum()
                + pixel_l2 * (images ** 2).sum())

    init, step = grouped_pixel_step(
        init_params, loss_fn, optax.adam(impressions_schedule(learning_rate, num_steps, schedule)),
        micro_batch=micro_batch)
    config = {"temperature": temperature, "num_steps": num_steps,
              "learning_rate": learning_rate, "schedule": schedule, "pixel_l2": pixel_l2,
              "init_resolution": init_resolution}
    return SynthesisMethod(name=name, init=init, step=step, images=pixels, num_steps=num_steps,
                           config=config)


def rescale_batch(images: jax.Array) -> jax.Array:
    """Each batch (leading axis: batches) mapped affinely so that it spans exactly [0, 1].

    The released code's `noise_image_clip`: one min and max over the whole batch tensor, in
    place of a clip of each pixel.
    """
    axes = tuple(range(1, images.ndim))
    low = images.min(axis=axes, keepdims=True)
    span = images.max(axis=axes, keepdims=True) - low
    return (images - low) / jnp.maximum(span, 1e-12)


def released_procedure_method(teacher: Teacher, *, num_per_class: int, batch_size: int = 100,
                              temperature: float = 20.0, num_steps: int = 1500,
                              learning_rate: float = 1e-3,
                              micro_batch: int | None = None) -> SynthesisMethod:
    """Data Impressions as the authors' released code makes them, on the rounds driver.

    Each class is one chain of batches of `batch_size`: the first batch starts from uniform
    [0, 1] noise, and every later batch starts from the previous batch's final images with the
    Adam state carried over; only the targets are new. Every step is Adam at a constant rate on
    CE(y, softmax(T(x)/τ)), then :func:`rescale_batch` per class batch. One round makes one
    batch of every class (the classes' chains are independent, so running them side by side is
    the code's class-by-class loop); `num_per_class / batch_size` rounds make the set.

    Where the paper and the code disagree (the paper's choice is `procedure="paper"`): the code
    warm-starts batches from one another, rescales by the batch's min and max instead of
    clipping, uses a constant rate of 1e-3 (the paper: decaying), and its targets are β-free
    (:func:`dirichlet.released_concentration`).

    Inputs: {"targets": (N, K)} class-major, N = K · num_per_class, batches in order.

    Args:
      teacher: the frozen classifier; images (H, W, C) in [0, 1].
      num_per_class: impressions per class, a multiple of `batch_size`.
      batch_size: impressions of a class optimised together (100 in the code).
      temperature: τ (20 in the code).
      num_steps: Adam steps per batch (1500 in the code).
      learning_rate: the constant Adam rate (1e-3 in the code).
      micro_batch: see :func:`jaxinv.synthesis.method.group_gradients`.

    References:
      github.com/vcl-iisc/ZSKD, di_generation/cifar_10_impressions_alexnet_Dirch.py and
      di_generation/dirichmat.py.
    """
    height, width, channels = teacher.image_shape
    num_classes = teacher.num_classes
    # One round's batches are spread over the devices.
    parallel.check_divisible(num_classes * batch_size, "classes x synthesis.batch_size")
    num_rounds = num_per_class // batch_size
    optimizer = optax.adam(learning_rate)

    def loss_fn(teacher_variables, images: jax.Array, inputs: dict, rng: jax.Array):
        del rng
        logits = teacher.logits(images, teacher_variables)
        return losses.soft_cross_entropy(logits, inputs["targets"], temperature).sum()

    losses_and_grads = group_gradients(loss_fn, micro_batch=micro_batch)
    batch_shape = (num_classes, batch_size, height, width, channels)

    def init(rng: jax.Array, inputs: dict) -> dict:
        images = jax.random.uniform(rng, batch_shape)
        return {"images": images, "opt_state": optimizer.init(images),
                "bank": jnp.zeros((num_rounds, *batch_shape)), "round": jnp.zeros((), jnp.int32),
                "targets": inputs["targets"].reshape(num_classes, num_rounds, batch_size, -1)}

    def step(state: dict, teacher_variables, rng: jax.Array) -> tuple[dict, dict]:
        targets = state["targets"][:, state["round"]].reshape(num_classes * batch_size, -1)

        def adam_step(_, carry):
            images, opt_state, _ = carry
            flat = images.reshape(-1, height, width, channels)
            example_losses, grads = losses_and_grads(teacher_variables, flat,
                                                     {"targets": targets}, rng)
            updates, opt_state = optimizer.update(grads.reshape(batch_shape), opt_state, images)
            images = rescale_batch(optax.apply_updates(images, updates))
            return images, opt_state, example_losses.mean()

        images, opt_state, loss = jax.lax.fori_loop(
            0, num_steps, adam_step, (state["images"], state["opt_state"], jnp.zeros(())))
        return ({**state, "images": images, "opt_state": opt_state,
                 "bank": state["bank"].at[state["round"]].set(images),
                 "round": state["round"] + 1}, {"loss": loss})

    def images(state: dict) -> jax.Array:
        # (rounds, classes, batch, ...) -> class-major, as the targets.
        return jnp.swapaxes(state["bank"], 0, 1).reshape(-1, height, width, channels)

    config = {"procedure": "released", "temperature": temperature, "num_steps": num_steps,
              "learning_rate": learning_rate, "batch_size": batch_size}
    return SynthesisMethod(name="data_impressions", init=init, step=step, images=images,
                           num_steps=num_rounds, independent_examples=False, config=config)


def impression_targets(teacher: Teacher, config: ml_collections.ConfigDict
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets (N, K), classes (N,) and betas (N,) for `config.kind`, class-major."""
    if config.kind == "one_hot":
        targets, classes, betas = dirichlet.one_hot_targets(teacher.num_classes,
                                                            config.num_per_class)
        return np.asarray(targets), np.asarray(classes), np.asarray(betas)
    similarity = dirichlet.class_similarity(teacher.head("Data Impressions")[0])
    if config.get("procedure", "paper") == "released":
        targets, classes, betas = dirichlet.released_dirichlet_targets(
            jax.random.key(config.seed), similarity, tuple(config.betas), config.num_per_class)
    else:
        targets, classes, betas = dirichlet.dirichlet_targets(
            jax.random.key(config.seed), similarity, tuple(config.betas), config.num_per_class,
            floor=config.floor)
    return np.asarray(targets), np.asarray(classes), np.asarray(betas)


def check_config(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
                 num_classes: int) -> None:
    """Refuses settings that cannot run, before a teacher is trained or a file written."""
    del num_classes
    if config.kind not in KINDS:
        raise ValueError(f"synthesis.kind must be one of {KINDS}, got {config.kind!r}.")
    for key in ("num_steps", "num_per_class"):
        value = config[key]
        if not is_count(value):
            raise ValueError(f"synthesis.{key} must be a whole number ≥ 1, got {value!r}.")
    if not config.temperature > 0:
        raise ValueError(f"synthesis.temperature τ must be > 0, got {config.temperature}; the "
                         "paper uses 20.")
    if not config.pixel_l2 >= 0:
        raise ValueError(f"synthesis.pixel_l2 must be ≥ 0, got {config.pixel_l2}.")
    impressions_schedule(config.learning_rate, config.num_steps, config.schedule)
    _check_init_resolution(config.init_resolution, image_shape)
    if config.kind == "dirichlet":
        dirichlet.check_betas(tuple(config.betas), config.num_per_class)
    procedure = config.get("procedure", "paper")
    if procedure not in PROCEDURES:
        raise ValueError(f"synthesis.procedure must be one of {PROCEDURES}, got {procedure!r}.")
    if procedure == "released":
        _check_released(config)


def _check_released(config: ml_collections.ConfigDict) -> None:
    """The released procedure has none of the paper variant's extras: refuse them, not ignore."""
    unsupported = {"kind": ("dirichlet", "the released code makes Data Impressions only"),
                   "schedule": ("constant", "its Adam rate is constant"),
                   "pixel_l2": (0.0, "it has no pixel prior"),
                   "init_resolution": (None, "it starts from pixel-wise noise")}
    for key, (wanted, why) in unsupported.items():
        if config[key] != wanted:
            raise ValueError(f"synthesis.procedure='released' needs synthesis.{key}={wanted!r} "
                             f"({why}), got {config[key]!r}.")
    batch_size = config.get("batch_size")
    if not is_count(batch_size) or config.num_per_class % batch_size:
        raise ValueError(f"synthesis.batch_size must be a whole number ≥ 1 that divides "
                         f"num_per_class = {config.num_per_class} (each class is a chain of "
                         f"batches; the code uses 100), got {batch_size!r}.")


def num_examples(config: ml_collections.ConfigDict, num_classes: int) -> int:
    """num_per_class impressions of every class."""
    return config.num_per_class * num_classes


def build(teacher: Teacher, config: ml_collections.ConfigDict
          ) -> tuple[SynthesisMethod, dict, dict]:
    """The method, inputs {"targets"} and metadata {"class", "beta"} of a `synthesis` block."""
    targets, classes, betas = impression_targets(teacher, config)
    if config.get("procedure", "paper") == "released":
        method = released_procedure_method(
            teacher, num_per_class=config.num_per_class, batch_size=config.batch_size,
            temperature=config.temperature, num_steps=config.num_steps,
            learning_rate=config.learning_rate)
        return method, {"targets": targets}, {"class": classes, "beta": betas}
    method = impressions_method(
        teacher, temperature=config.temperature, num_steps=config.num_steps,
        learning_rate=config.learning_rate, schedule=config.schedule, pixel_l2=config.pixel_l2,
        init_resolution=config.init_resolution,
        name="data_impressions" if config.kind == "dirichlet" else "class_impressions")
    return method, {"targets": targets}, {"class": classes, "beta": betas}


def describe(teacher: Teacher, transfer_set, test, figures_dir: str) -> dict:
    """Appendix B's check and Fig. 1: the class similarity read off the teacher's weights,
    against one measured on real test features, and its heatmap (Data Impressions only)."""
    from jaxinv import figures  # matplotlib only where figures are drawn

    results = {"target_argmax_is_drawn_class": float(np.mean(
        transfer_set.targets.argmax(-1) == transfer_set.metadata["class"]))}
    if transfer_set.method != "data_impressions" or teacher.num_classes < 3:
        # Two classes have one off-diagonal similarity: no correlation to measure.
        return results
    features_fn = jax.jit(teacher.features)
    features = np.concatenate([np.asarray(features_fn(test.images[i:i + 1000]))
                               for i in range(0, len(test.images), 1000)])
    measured = dirichlet.feature_class_similarity(features, test.labels, teacher.num_classes)
    from_weights = np.asarray(dirichlet.class_similarity(teacher.head("Data Impressions")[0]))
    results["similarity_check"] = {
        "off_diagonal": dirichlet.similarity_agreement(from_weights, measured),
        "whole_matrix": dirichlet.similarity_agreement(from_weights, measured,
                                                       include_diagonal=True)}
    figures.similarity_heatmap(from_weights, test.class_names,
                               f"{figures_dir}/similarity.png")
    return results


def smoke_config() -> ml_collections.ConfigDict:
    """A seconds-scale Data Impressions block, for the contract test and smoke runs."""
    return ml_collections.ConfigDict(dict(
        method="impressions", kind="dirichlet", betas=(1.0, 0.1), floor=1e-3, num_per_class=2,
        temperature=20.0, num_steps=24, learning_rate=0.2, schedule="linear", pixel_l2=0.0,
        init_resolution=None, chunk_size=8, steps_per_call=8, seed=0))
