"""DeepInversion: pixels optimised so that a batch matches the teacher's BatchNorm statistics.

Each batch of `batch_size` images (the engine's group: the statistics are the batch's) starts
from uniform noise with one class per image, and Adam minimises

  w_bn · Σ_l (‖μ_l − μ_l,run‖₂ + ‖σ²_l − σ²_l,run‖₂) + w_cls · CE(T(x̃), y)
  + w_tv · mean TV₂(x) + w_l2 · mean ‖x‖²

where x̃ is the batch jittered by one random roll of up to `jitter` pixels (and one random
horizontal flip when `flip`), shared by the batch, as the reference code does; pixels are
clipped to [0, 1] after every step. The last iterate is kept (the reference code means to keep
the best one, but its copy aliases the tensor, so it keeps the last too).

Adaptive DeepInversion (ADI, `competition > 0`) adds −competition · JS(student(x̃), T(x̃)) at
temperature 3: the batch is pushed to where a student disagrees with the teacher. The student
is trained between batches, so ADI runs batch after batch over one state (the rounds engine):
each round synthesises one batch into a bank of all images so far, then the student takes
`student_steps` distillation steps (KL at τ = 20) on batches drawn from the bank.

Departures from the reference code, for jaxinv's [0, 1] pixels: pixels start from U(0, 1)
rather than N(0, 1) in the teacher's standardised space, and are clipped.

Config (`synthesis` block, `method="deepinversion"`): num_per_class, batch_size, num_steps,
learning_rate, weights {bn, cls, tv, l2}, jitter, flip; and for ADI competition (the weight
of the JS term, 0 for plain DeepInversion), student (a `jaxinv.models` name), student_steps,
student_learning_rate.

References:
  Yin, Molchanov, Li, Alvarez, Mallya, Hoiem, Jha and Kautz, "Dreaming to Distill: Data-free
  Knowledge Transfer via DeepInversion", CVPR 2020, eqs. 3-4; the CMI code base
  (zju-vipa/DataFree) for the settings.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxinv import losses, models, train
from jaxinv.synthesis import online_student
from jaxinv.synthesis.method import Phase, SynthesisMethod, grouped_pixel_step, pixels
from jaxinv.teacher import Teacher
from jaxinv.validation import check_loss_weights, is_count

WEIGHTS = ("bn", "cls", "tv", "l2")


def jitter_and_flip(images: jax.Array, rng: jax.Array, *, jitter: int,
                    flip: bool) -> jax.Array:
    """One random roll of up to `jitter` pixels along H and W (and, with `flip`, one horizontal
    flip with probability 1/2), the same for every image of the batch (N, H, W, C)."""
    shift_rng, flip_rng = jax.random.split(rng)
    shifts = jax.random.randint(shift_rng, (2,), -jitter, jitter + 1)
    images = jnp.roll(images, (shifts[0], shifts[1]), axis=(-3, -2))
    if flip:
        images = jnp.where(jax.random.bernoulli(flip_rng), images[..., ::-1, :], images)
    return images


def deepinversion_method(teacher: Teacher, *, batch_size: int = 256, num_steps: int = 1000,
                         learning_rate: float = 0.1, weights: dict | None = None,
                         jitter: int = 4, flip: bool = True,
                         micro_batch: int | None = None) -> SynthesisMethod:
    """DeepInversion as a :class:`SynthesisMethod`; inputs {"targets" (n, K) one-hot}.

    Args:
      teacher: the frozen classifier; it must have BatchNorm layers.
      batch_size: images whose statistics are matched together (the reference: 256).
      num_steps: Adam steps (the reference: 1,000).
      learning_rate: Adam's (β 0.5, 0.99, as the reference), on [0, 1] pixels.
      weights: {"bn", "cls", "tv", "l2"}, each ≥ 0 (the reference: 10, 1, 1e-3, 0).
      jitter: largest roll in pixels (≥ 0).
      flip: random horizontal flips (off for digits).
      micro_batch: see :func:`jaxinv.synthesis.method.group_gradients`.

    Raises:
      TeacherLayerError: the teacher has no BatchNorm layer (names the methods that need none).
    """
    weights = dict(weights or {"bn": 10.0, "cls": 1.0, "tv": 1e-3, "l2": 0.0})
    _check_settings(batch_size, weights, jitter)
    jax.eval_shape(teacher.batchnorm_statistics, jnp.zeros((2, *teacher.image_shape)))

    def init_params(rng: jax.Array, inputs: dict) -> jax.Array:
        return jax.random.uniform(rng, (inputs["targets"].shape[0], *teacher.image_shape))

    batch_loss = _batch_loss(teacher, weights, jitter, flip)

    def loss_fn(teacher_variables, images, inputs, rng):
        return batch_loss(teacher_variables, images, inputs["targets"], rng)[0]

    init, step = grouped_pixel_step(init_params, loss_fn,
                                    optax.adam(learning_rate, b1=0.5, b2=0.99),
                                    group_size=batch_size, micro_batch=micro_batch)
    config = {"batch_size": batch_size, "num_steps": num_steps, "learning_rate": learning_rate,
              "weights": weights, "jitter": jitter, "flip": flip}
    return SynthesisMethod(name="deepinversion", init=init, step=step, images=pixels,
                           num_steps=num_steps, group_size=batch_size, config=config)


def _batch_loss(teacher: Teacher, weights: dict, jitter: int, flip: bool):
    """`(teacher_variables, images, targets, rng) -> (loss, jittered images)` of one batch."""
    def loss(teacher_variables, images, targets, rng):
        jittered = jitter_and_flip(images, rng, jitter=jitter, flip=flip)
        logits, stats = teacher.batchnorm_statistics(jittered, teacher_variables)
        value = (weights["bn"] * losses.batchnorm_statistics_loss(stats)
                 + weights["cls"] * losses.soft_cross_entropy(logits, targets).mean()
                 + weights["tv"] * losses.total_variation_l2(images).mean()
                 + weights["l2"] * losses.image_l2(images).mean())
        return value, (jittered, logits)

    return loss


def adaptive_deepinversion_method(
        teacher: Teacher, num_examples: int, *, student: str = "bn_cnn_half",
        competition: float = 1.0, student_steps: int = 50, student_learning_rate: float = 1e-3,
        kd_temperature: float = 20.0, batch_size: int = 256, num_steps: int = 1000,
        learning_rate: float = 0.1, weights: dict | None = None, jitter: int = 4,
        flip: bool = True) -> SynthesisMethod:
    """ADI: DeepInversion batches that also compete with a student trained between them.

    One round per batch of `batch_size` (num_examples / batch_size rounds), in four phases (draw,
    invert, bank, distil); the state holds the bank of every image so far, the round's batch, the
    round and the student with its Adam state, all checkpointed. Inputs: {"targets" (num_examples,
    K)}, consumed a batch per round.

    Args:
      teacher: the frozen classifier; it must have BatchNorm layers.
      num_examples: the bank's size, a multiple of batch_size.
      student: the student model's name; competition: the JS term's weight ≥ 0 (the
        reference: 1, at temperature 3); student_steps, student_learning_rate: the student's
        Adam steps per round on batches of the bank; kd_temperature: its KL's τ.
      batch_size, num_steps, learning_rate, weights, jitter, flip: as
        :func:`deepinversion_method`.

    References:
      Yin et al., CVPR 2020, eqs. 7-8 (Adaptive DeepInversion).
    """
    weights = dict(weights or {"bn": 10.0, "cls": 1.0, "tv": 1e-3, "l2": 0.0})
    _check_settings(batch_size, weights, jitter)
    if num_examples % batch_size:
        raise ValueError(f"{num_examples} images are not a whole number of batches of "
                         f"{batch_size}.")
    jax.eval_shape(teacher.batchnorm_statistics, jnp.zeros((2, *teacher.image_shape)))
    student_model = models.get_model(student, num_classes=teacher.num_classes)
    student_tx = optax.adam(student_learning_rate)
    pixel_tx = optax.adam(learning_rate, b1=0.5, b2=0.99)
    batch_loss = _batch_loss(teacher, weights, jitter, flip)

    def init(rng: jax.Array, inputs: dict) -> dict:
        state = train.init_model_state(student_model, student_tx, rng, teacher.image_shape)
        batch = jnp.zeros((batch_size, *teacher.image_shape))  # replaced every round
        return {"bank": jnp.zeros((num_examples, *teacher.image_shape)),
                "round": jnp.zeros((), jnp.int32), "student": state, "batch": batch,
                "batch_opt": pixel_tx.init(batch), "inputs": inputs}

    def draw(state, teacher_variables, rng):
        """This round's batch from U(0, 1), with a fresh Adam."""
        del teacher_variables
        batch = jax.random.uniform(rng, (batch_size, *teacher.image_shape))
        return {**state, "batch": batch, "batch_opt": pixel_tx.init(batch)}, {}

    def invert(state, teacher_variables, rng):
        """One Adam step of the batch's pixels against the teacher and the student."""
        targets = jax.lax.dynamic_slice_in_dim(state["inputs"]["targets"],
                                               state["round"] * batch_size, batch_size)

        def objective(images):
            value, (jittered, logits) = batch_loss(teacher_variables, images, targets, rng)
            student_logits = models.apply_fn(student_model)(state["student"].variables,
                                                            jittered)
            return value - competition * losses.jensen_shannon(student_logits, logits,
                                                               temperature=3.0)

        value, grads = jax.value_and_grad(objective)(state["batch"])
        updates, batch_opt = pixel_tx.update(grads, state["batch_opt"], state["batch"])
        batch = jnp.clip(optax.apply_updates(state["batch"], updates), 0.0, 1.0)
        return {**state, "batch": batch, "batch_opt": batch_opt}, {"loss": value}

    def bank_batch(state, teacher_variables, rng):
        """The batch's last iterate joins the bank."""
        del teacher_variables, rng
        bank = jax.lax.dynamic_update_slice_in_dim(state["bank"], state["batch"],
                                                   state["round"] * batch_size, 0)
        return {**state, "bank": bank, "round": state["round"] + 1}, {}

    def distil(state, teacher_variables, rng):
        """One KD step of the student on a batch of the bank so far."""
        student_state, loss = online_student.distil_step(
            student_model, student_tx, teacher, teacher_variables, state["student"],
            state["bank"], state["round"] * batch_size, rng, batch_size=batch_size,
            temperature=kd_temperature)
        return {**state, "student": student_state}, {"student_loss": loss}

    config = {"batch_size": batch_size, "num_steps": num_steps, "learning_rate": learning_rate,
              "weights": weights, "jitter": jitter, "flip": flip, "competition": competition,
              "student": student, "student_steps": student_steps,
              "student_learning_rate": student_learning_rate,
              "kd_temperature": kd_temperature}
    phases = (Phase("draw", draw), Phase("invert", invert, num_steps),
              Phase("bank", bank_batch), Phase("distil", distil, student_steps))
    return SynthesisMethod.from_phases(phases, name="adaptive_deepinversion", init=init,
                                       images=lambda state: state["bank"],
                                       num_steps=num_examples // batch_size, config=config)


def _check_settings(batch_size, weights: dict, jitter) -> None:
    if not is_count(batch_size, minimum=2):
        raise ValueError(f"synthesis.batch_size must be a whole number ≥ 2 (BatchNorm "
                         f"statistics are a batch's), got {batch_size!r}.")
    check_loss_weights(weights, WEIGHTS)
    if not is_count(jitter, minimum=0):
        raise ValueError(f"synthesis.jitter must be a whole number of pixels ≥ 0, got "
                         f"{jitter!r}.")


def check_config(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
                 num_classes: int) -> None:
    """Refuses settings that cannot run, before a teacher is trained or a file written."""
    del image_shape
    _check_settings(config.batch_size, dict(config.weights), config.jitter)
    for key in ("num_per_class", "num_steps"):
        if not is_count(config[key]):
            raise ValueError(f"synthesis.{key} must be a whole number ≥ 1, got {config[key]!r}.")
    for key in ("learning_rate", "student_learning_rate"):
        if not (math.isfinite(config[key]) and config[key] > 0):
            raise ValueError(f"synthesis.{key} must be > 0, got {config[key]}.")
    if not (math.isfinite(config.competition) and config.competition >= 0):
        raise ValueError(f"synthesis.competition must be ≥ 0 (0: plain DeepInversion), got "
                         f"{config.competition}.")
    if config.competition > 0:
        if not is_count(config.student_steps):
            raise ValueError(f"synthesis.student_steps must be a whole number ≥ 1, got "
                             f"{config.student_steps!r}.")
        models.get_model(config.student, num_classes=num_classes)
    total = config.num_per_class * num_classes
    if total % config.batch_size:
        raise ValueError(f"synthesis.num_per_class × classes = {total} is not a multiple of "
                         f"batch_size {config.batch_size}; every image needs a whole batch to "
                         "share statistics with.")


def num_examples(config: ml_collections.ConfigDict, num_classes: int) -> int:
    """num_per_class images of every class."""
    return config.num_per_class * num_classes


def build(teacher: Teacher, config: ml_collections.ConfigDict
          ) -> tuple[SynthesisMethod, dict, dict]:
    """The method, inputs {"targets"} and metadata {"class"}; classes are shuffled over the
    examples (seeded), so that every batch holds a mix of classes as the reference's does."""
    targets, classes = online_student.shuffled_class_targets(teacher.num_classes,
                                                             config.num_per_class, config.seed)
    shared = dict(batch_size=config.batch_size, num_steps=config.num_steps,
                  learning_rate=config.learning_rate, weights=dict(config.weights),
                  jitter=config.jitter, flip=config.flip)
    if config.competition > 0:
        method = adaptive_deepinversion_method(
            teacher, len(classes), student=config.student, competition=config.competition,
            student_steps=config.student_steps,
            student_learning_rate=config.student_learning_rate, **shared)
    else:
        method = deepinversion_method(teacher, **shared)
    return method, {"targets": targets}, {"class": classes}


def smoke_config() -> ml_collections.ConfigDict:
    """A seconds-scale DeepInversion block, for the contract test and smoke runs."""
    return ml_collections.ConfigDict(dict(
        method="deepinversion", num_per_class=16, batch_size=2, num_steps=24,
        learning_rate=0.3, weights={"bn": 0.1, "cls": 1.0, "tv": 1e-3, "l2": 0.0}, jitter=1,
        flip=False, competition=0.0, student="bn_cnn_half", student_steps=4,
        student_learning_rate=1e-3, chunk_size=80, steps_per_call=8, seed=0))
