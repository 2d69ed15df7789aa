"""SpaceshipNet: a generator kept across epochs, a feature pool with channel-wise exchange
(CFE), and a student distilled with multi-scale activation-region consistency (mSARC).

Epoch by epoch (one round each, §A.2 of the supplement):

1. the generator (:class:`jaxinv.models.spaceship.SpaceshipGenerator`), never re-initialised,
   takes `generator_steps` Adam steps (β 0.5, 0.999) on a fresh latent batch z (not optimised)
   with balanced labels y (i mod K):  w_cls · CE(T(G(z)), y) + w_bn · L_bn(G(z));
2. the batch's features F1, F2, F3 (before the two upsamplings and the last convolution) and
   its images join the pool;
3. the student takes `student_steps` steps, each on B pooled features of one level (drawn
   uniformly), channel-exchanged with probability p (:mod:`jaxinv.feature_exchange`) and
   decoded by the current generator's later layers (running BatchNorm statistics), on
   w_kl · KD(S, T; τ) + w_msarc · mSARC(S, T) (:mod:`jaxinv.cam`).

The whole state (generator, its Adam, the epoch's z, pool, student, its optimiser, round) is
checkpointed by the rounds engine, an epoch its four phases (draw, generator, pool, distil), so a
killed run resumes bit-identically. The TransferSet is the pool's images; the student is the
method's product, saved by `synthesize` as `models/student` and scored by the `synthesis_student`
task (the distill task would retrain one without CFE and mSARC).

Where the authors' code (skgyu/SpaceshipNet) departs from the supplement, a setting chooses:
`generator_schedule` "cosine" (one Adam at 0.1 decaying to 0 over the run: the supplement) or
"restart" (a fresh Adam at a constant rate every epoch: the code, at 1e-3); `exchange_partner`
"random" (the supplement) or "reversed" (sample B−1−i: the code) and `exchange_per_batch` (one
coin per batch: the code); `kl_reduction` "batchmean" (the supplement's KL) or "class_mean"
(the code's elementwise mean, which divides w_kl by K). The code keeps the best iterate of the
generator's steps; here the last one is pooled. The KD term is the cross-entropy from the
teacher's to the student's softmax at τ, the KL up to the teacher's entropy (a constant).

Config (`synthesis` block, `method="spaceshipnet"`): num_epochs, batch_size, generator_steps,
student_steps, latent_dim, generator_width, generator_learning_rate, generator_schedule,
weights {cls, bn, kl, msarc}, temperature, exchange_probability, exchange_partner,
exchange_per_batch, kl_reduction, student, student_optimizer {name, learning_rate, schedule,
momentum, weight_decay}, checkpoint_every.

References:
  Yu, Chen, Zhao, Chen, Wang, Wei, Zhao and Song, "Data-Free Knowledge Distillation via
  Feature Exchange and Activation Region Constraint", CVPR 2023, and its supplement (§A,
  Tables A and B).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxinv import cam, feature_exchange, losses, models, train
from jaxinv.models.spaceship import LEVELS, SpaceshipGenerator
from jaxinv.synthesis.method import Phase, SynthesisMethod
from jaxinv.teacher import Teacher, TeacherLayerError
from jaxinv.validation import check_loss_weights, is_count

WEIGHTS = ("cls", "bn", "kl", "msarc")
GENERATOR_SCHEDULES = ("cosine", "restart")
KL_REDUCTIONS = ("batchmean", "class_mean")


def check_stages(teacher: Teacher, student: str, image_shape: tuple[int, int, int]) -> None:
    """Refuses a teacher or student whose stages mSARC cannot compare, naming them."""
    counts = {}
    for role, model in (("teacher", teacher.model),
                        ("student", models.get_model(student, num_classes=teacher.num_classes))):
        variables = jax.eval_shape(lambda m=model: models.init_variables(
            m, jax.random.key(0), image_shape))
        name = type(model).__name__ if role == "teacher" else student
        try:
            cams = jax.eval_shape(lambda v, m=model: cam.stage_cams(
                models.apply_fn(m), v, jnp.zeros((2, *image_shape)))[1], variables)
        except (ValueError, KeyError) as err:
            raise TeacherLayerError(
                f"SpaceshipNet's mSARC reads the stage outputs and the dense `head` of the "
                f"{role} ({name}), which it does not expose ({err}). Use a ResNet, WRN, VGG or "
                "BN CNN, or set synthesis.weights.msarc = 0.") from err
        counts[role] = len(cams)
    if counts["teacher"] != counts["student"]:
        raise ValueError(f"mSARC pairs the stages of teacher and student, but the teacher "
                         f"({type(teacher.model).__name__}) marks {counts['teacher']} and the "
                         f"student ({student}) {counts['student']}; pick a student of the "
                         "teacher's family, or set synthesis.weights.msarc = 0.")


def spaceshipnet_method(teacher: Teacher, num_examples: int, *, batch_size: int = 256,
                        generator_steps: int = 200, student_steps: int = 2000,
                        latent_dim: int = 256, generator_width: int = 128,
                        generator_learning_rate: float = 0.1,
                        generator_schedule: str = "cosine", weights: dict | None = None,
                        temperature: float = 30.0, exchange_probability: float = 0.7,
                        exchange_partner: str = "random", exchange_per_batch: bool = False,
                        kl_reduction: str = "batchmean", student: str = "resnet18",
                        student_optimizer: dict | None = None) -> SynthesisMethod:
    """SpaceshipNet as a stateful :class:`SynthesisMethod`; inputs {"targets" (N, K)}, one
    batch of `batch_size` labels per epoch (N / batch_size epochs).

    Args:
      teacher: the frozen classifier, with BatchNorm layers (and marked stages for mSARC).
      num_examples: the pool's size, a multiple of batch_size.
      batch_size: latents per epoch and images per student step (the supplement: 256).
      generator_steps, student_steps: g and k per epoch (200 and 2000).
      latent_dim, generator_width: z's size (256) and Table B's first width (128).
      generator_learning_rate, generator_schedule: see the module docstring (0.1, "cosine").
      weights: {"cls", "bn", "kl", "msarc"} ≥ 0 (0.5, 1, 900, 1); msarc 0 is the ablation
        without mSARC.
      temperature: τ of the KD term (30).
      exchange_probability: p in [0, 1] (0.7); 0 is the ablation without CFE.
      exchange_partner, exchange_per_batch: see :func:`jaxinv.feature_exchange.exchange_channels`.
      kl_reduction: "batchmean" or "class_mean" (module docstring).
      student: a `jaxinv.models` name; its optimiser `student_optimizer` (train.make_optimizer's
        block; the supplement: SGD 0.1, momentum 0.9, weight decay 1e-4), over all epochs.

    Raises:
      TeacherLayerError: no BatchNorm, or (with mSARC) no marked stages, in teacher or student.
      ValueError: settings it cannot run.
    """
    weights = dict(weights or {"cls": 0.5, "bn": 1.0, "kl": 900.0, "msarc": 1.0})
    check_loss_weights(weights, WEIGHTS)
    _check_settings(num_examples, batch_size, temperature, exchange_probability,
                    exchange_partner, generator_schedule, kl_reduction, teacher.image_shape)
    jax.eval_shape(teacher.batchnorm_statistics, jnp.zeros((2, *teacher.image_shape)))
    if weights["msarc"] > 0:
        check_stages(teacher, student, teacher.image_shape)
    num_epochs = num_examples // batch_size
    generator = SpaceshipGenerator(tuple(teacher.image_shape), width=generator_width)
    student_model = models.get_model(student, num_classes=teacher.num_classes)
    student_apply, teacher_apply = models.apply_fn(student_model), models.apply_fn(teacher.model)
    student_optimizer = ml_collections.ConfigDict(student_optimizer or dict(
        name="sgd", learning_rate=0.1, schedule="cosine", momentum=0.9, weight_decay=1e-4))
    student_tx = train.make_optimizer(student_optimizer, num_epochs * student_steps)
    if generator_schedule == "cosine":
        generator_tx = optax.adam(optax.cosine_decay_schedule(
            generator_learning_rate, num_epochs * generator_steps), b1=0.5, b2=0.999)
    else:
        generator_tx = optax.adam(generator_learning_rate, b1=0.5, b2=0.999)
    kd_scale = weights["kl"] / (teacher.num_classes if kl_reduction == "class_mean" else 1.0)

    def init(rng: jax.Array, inputs: dict) -> dict:
        generator_rng, student_rng = jax.random.split(rng)
        generator_variables = generator.init(generator_rng, jnp.zeros((2, latent_dim)))
        _, features = jax.eval_shape(lambda v: generator.apply(v, jnp.zeros((1, latent_dim)),
                                                               False), generator_variables)
        return {"generator": generator_variables,
                "generator_opt": generator_tx.init(generator_variables["params"]),
                "pool": {"images": jnp.zeros((num_examples, *teacher.image_shape)),
                         **{f"f{level}": jnp.zeros((num_examples, *f.shape[1:]))
                            for level, f in zip(LEVELS, features, strict=True)}},
                "round": jnp.zeros((), jnp.int32),
                "z": jnp.zeros((batch_size, latent_dim)),  # drawn afresh every epoch
                "student": train.init_model_state(student_model, student_tx, student_rng,
                                                  teacher.image_shape),
                "inputs": inputs}

    def draw(state, teacher_variables, rng):
        """The epoch's latent batch z (and, with the "restart" schedule, a fresh Adam)."""
        del teacher_variables
        opt_state = (generator_tx.init(state["generator"]["params"])
                     if generator_schedule == "restart" else state["generator_opt"])
        return {**state, "z": jax.random.normal(rng, (batch_size, latent_dim)),
                "generator_opt": opt_state}, {}

    def fit_generator(state, teacher_variables, rng):
        """One Adam step of the generator on z with the epoch's balanced labels."""
        del rng
        labels = jnp.argmax(jax.lax.dynamic_slice_in_dim(
            state["inputs"]["targets"], state["round"] * batch_size, batch_size), -1)

        def objective(params, batch_stats):
            (images, _), updates = generator.apply(
                {"params": params, "batch_stats": batch_stats}, state["z"], True,
                mutable=["batch_stats"])
            logits, stats = teacher.batchnorm_statistics(images, teacher_variables)
            loss = (weights["cls"] * losses.cross_entropy(logits, labels)
                    + weights["bn"] * losses.batchnorm_statistics_loss(stats))
            return loss, updates["batch_stats"]

        variables = state["generator"]
        (loss, batch_stats), grads = jax.value_and_grad(objective, has_aux=True)(
            variables["params"], variables["batch_stats"])
        updates, opt_state = generator_tx.update(grads, state["generator_opt"],
                                                 variables["params"])
        return ({**state, "generator": {"params": optax.apply_updates(variables["params"],
                                                                       updates),
                                        "batch_stats": batch_stats},
                 "generator_opt": opt_state}, {"loss": loss})

    def pool_batch(state, teacher_variables, rng):
        """The epoch's images and features F1, F2, F3 join the pool."""
        del teacher_variables, rng
        # Normalised by the batch's own statistics as during the generator's steps (the
        # running ones are left as those steps made them).
        (images, features), _ = generator.apply(state["generator"], state["z"], True,
                                                mutable=["batch_stats"])
        start = state["round"] * batch_size
        pool = {key: jax.lax.dynamic_update_slice_in_dim(state["pool"][key], value, start, 0)
                for key, value in (("images", images), *(
                    (f"f{level}", f) for level, f in zip(LEVELS, features, strict=True)))}
        return {**state, "pool": pool, "round": state["round"] + 1}, {}

    def pooled_images(generator_variables, pool, filled, rng):
        """B images decoded from channel-exchanged pooled features of one random level."""
        draw_rng, level_rng, exchange_rng = jax.random.split(rng, 3)
        rows = jax.random.randint(draw_rng, (batch_size,), 0, filled)

        def from_level(level):
            def decode(_):
                features = feature_exchange.exchange_channels(
                    exchange_rng, pool[f"f{level}"][rows], exchange_probability,
                    partner=exchange_partner, per_batch=exchange_per_batch)
                return generator.apply(generator_variables, features, level,
                                       method=SpaceshipGenerator.decode)
            return decode

        return jax.lax.switch(jax.random.randint(level_rng, (), 0, len(LEVELS)),
                              [from_level(level) for level in LEVELS], None)

    def student_objective(params, batch_stats, images, teacher_variables):
        variables = {"params": params, "batch_stats": batch_stats}
        if weights["msarc"] == 0:
            teacher_logits = teacher.logits(images, teacher_variables)
            logits, new_stats = train.apply_model(student_model, variables, images, train=True)
            msarc = 0.0
        else:
            teacher_logits, teacher_cams, _ = cam.stage_cams(teacher_apply, teacher_variables,
                                                             images)
            logits, student_cams, state = cam.stage_cams(
                student_apply, variables, images, classes=jnp.argmax(teacher_logits, -1),
                train=True)
            new_stats = state["batch_stats"]
            msarc = cam.msarc_loss([jax.lax.stop_gradient(c) for c in teacher_cams],
                                   student_cams)
        kd = losses.distillation_loss(logits, teacher_logits, temperature, scale_by_t2=False)
        return kd_scale * kd + weights["msarc"] * msarc, new_stats

    def distil(state, teacher_variables, rng):
        """One student step on decoded, channel-exchanged features of the pool so far."""
        student_state = state["student"]
        images = pooled_images(state["generator"], state["pool"],
                               state["round"] * batch_size, rng)
        (loss, batch_stats), grads = jax.value_and_grad(student_objective, has_aux=True)(
            student_state.params, student_state.batch_stats, images, teacher_variables)
        updates, opt_state = student_tx.update(grads, student_state.opt_state,
                                               student_state.params)
        student_state = train.ModelState(params=optax.apply_updates(student_state.params,
                                                                    updates),
                                         batch_stats=batch_stats, opt_state=opt_state)
        return {**state, "student": student_state}, {"student_loss": loss}

    config = {"batch_size": batch_size, "generator_steps": generator_steps,
              "student_steps": student_steps, "latent_dim": latent_dim,
              "generator_width": generator_width,
              "generator_learning_rate": generator_learning_rate,
              "generator_schedule": generator_schedule, "weights": weights,
              "temperature": temperature, "exchange_probability": exchange_probability,
              "exchange_partner": exchange_partner, "exchange_per_batch": exchange_per_batch,
              "kl_reduction": kl_reduction, "student": student,
              "student_optimizer": student_optimizer.to_dict()}
    phases = (Phase("draw", draw), Phase("generator", fit_generator, generator_steps),
              Phase("pool", pool_batch), Phase("distil", distil, student_steps))
    return SynthesisMethod.from_phases(
        phases, name="spaceshipnet", init=init, images=lambda s: s["pool"]["images"],
        num_steps=num_epochs, config=config,
        models=lambda s: {"student": (student, s["student"].variables)})


def _check_settings(num_examples, batch_size, temperature, exchange_probability,
                    exchange_partner, generator_schedule, kl_reduction,
                    image_shape: tuple[int, int, int]) -> None:
    if not is_count(batch_size, minimum=2):
        raise ValueError(f"synthesis.batch_size must be a whole number ≥ 2 (BatchNorm "
                         f"statistics are a batch's), got {batch_size!r}.")
    if num_examples % batch_size:
        raise ValueError(f"{num_examples} images are not a whole number of epochs of "
                         f"{batch_size}; choose num_epochs and batch_size so that they are.")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"synthesis.temperature must be > 0, got {temperature}.")
    if not 0.0 <= exchange_probability <= 1.0:
        raise ValueError(f"synthesis.exchange_probability p must lie in [0, 1] (0.7 in the "
                         f"paper; 0 switches CFE off), got {exchange_probability}.")
    for key, value, allowed in (("exchange_partner", exchange_partner,
                                 feature_exchange.PARTNERS),
                                ("generator_schedule", generator_schedule, GENERATOR_SCHEDULES),
                                ("kl_reduction", kl_reduction, KL_REDUCTIONS)):
        if value not in allowed:
            raise ValueError(f"synthesis.{key} must be one of {allowed}, got {value!r}.")
    height, width, _ = image_shape
    if height % 4 or width % 4:
        raise ValueError(f"SpaceshipNet's generator upsamples twice by 2: images of "
                         f"{height}x{width} need sides that are multiples of 4.")


def check_config(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
                 num_classes: int) -> None:
    """Refuses settings that cannot run, before a teacher is trained or a file written."""
    check_loss_weights(dict(config.weights), WEIGHTS)
    for key in ("num_epochs", "generator_steps", "student_steps", "latent_dim",
                "generator_width"):
        if not is_count(config[key]):
            raise ValueError(f"synthesis.{key} must be a whole number ≥ 1, got {config[key]!r}.")
    _check_settings(num_examples(config, num_classes), config.batch_size, config.temperature,
                    config.exchange_probability, config.exchange_partner,
                    config.generator_schedule, config.kl_reduction, image_shape)
    if not (math.isfinite(config.generator_learning_rate) and config.generator_learning_rate > 0):
        raise ValueError(f"synthesis.generator_learning_rate must be > 0, got "
                         f"{config.generator_learning_rate}.")
    models.get_model(config.student, num_classes=num_classes)
    train.make_optimizer(config.student_optimizer, 1)


def num_examples(config: ml_collections.ConfigDict, num_classes: int) -> int:
    """One batch of optimised images per epoch."""
    del num_classes
    return config.num_epochs * config.batch_size


def build(teacher: Teacher, config: ml_collections.ConfigDict
          ) -> tuple[SynthesisMethod, dict, dict]:
    """The method, inputs {"targets"} (one-hot, balanced: example i has class i mod K) and
    metadata {"class"}."""
    count = num_examples(config, teacher.num_classes)
    classes = np.arange(count) % teacher.num_classes
    method = spaceshipnet_method(
        teacher, count, batch_size=config.batch_size, generator_steps=config.generator_steps,
        student_steps=config.student_steps, latent_dim=config.latent_dim,
        generator_width=config.generator_width,
        generator_learning_rate=config.generator_learning_rate,
        generator_schedule=config.generator_schedule, weights=dict(config.weights),
        temperature=config.temperature, exchange_probability=config.exchange_probability,
        exchange_partner=config.exchange_partner,
        exchange_per_batch=config.exchange_per_batch, kl_reduction=config.kl_reduction,
        student=config.student, student_optimizer=config.student_optimizer.to_dict())
    return method, {"targets": np.eye(teacher.num_classes, dtype=np.float32)[classes]}, {
        "class": classes}


def smoke_config() -> ml_collections.ConfigDict:
    """A seconds-scale SpaceshipNet block, for the contract test and smoke runs."""
    return ml_collections.ConfigDict(dict(
        method="spaceshipnet", num_epochs=3, batch_size=8, generator_steps=4,
        student_steps=3, latent_dim=8, generator_width=16, generator_learning_rate=0.1,
        generator_schedule="cosine",
        weights={"cls": 0.5, "bn": 1.0, "kl": 900.0, "msarc": 1.0}, temperature=30.0,
        exchange_probability=0.7, exchange_partner="random", exchange_per_batch=False,
        kl_reduction="batchmean", student="bn_cnn_half",
        student_optimizer=dict(name="sgd", learning_rate=0.1, schedule="cosine", momentum=0.9,
                               weight_decay=1e-4),
        checkpoint_every=2, seed=0))
