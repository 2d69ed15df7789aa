"""Contrastive Model Inversion (CMI): a fresh generator per batch, made diverse by contrast.

Round by round (one batch of `batch_size` images each), as Algorithm 1:

1. a generator (:class:`jaxinv.models.cmi.CMIGenerator`) is drawn afresh and, with its latent
   codes z, optimised by Adam for `num_steps` steps (with `generator=False`, the batch's
   pixels instead: Table 2's cut-off) on

     w_bn · L_bn(x⁺) + w_cls · CE(T(x⁺), y) + w_adv · L_d-adv(T(x⁺), S(x⁺))
     + w_contrastive · L_cr(h(F(x)), h(F(x⁺)), bank)

   where x⁺ is a global view of the batch (a shift of up to 1/8 of the side, and a flip when
   `flip`), x a local view (a zoom of up to 1.5x and a shift of up to 1/4: this module's
   stand-in for the reference's random resized crop of 25-100 % of the area), F the
   concatenated spatial means of every BatchNorm layer's input (the reference code's
   contrastive feature; the paper speaks of the penultimate and pooled intermediate features),
   h the projection head, which is trained alongside and never reset, L_cr the InfoNCE of the
   local view against its global view (gradient stopped, as the paper does) with the other
   global views and up to `num_negatives` features of the memory bank as negatives, and
   L_d-adv the decision-adversarial KL on samples the student S and the teacher agree on;
2. the batch's last iterate joins the image pool (the reference keeps the best iterate) and
   its features join the memory bank (a ring of `bank_size` features, not images, as the
   reference code);
3. the student takes `student_steps` distillation steps (KL at τ = 20) on batches of the pool.

Everything (pool, bank, head and its Adam state, the round's generator, student, round) is one state
on the rounds engine, a round its four phases (draw, invert, pool, distil), checkpointed, so a run
killed between rounds resumes bit-identically. The TransferSet is the pool; the distill task then
trains its own student on it.

Config (`synthesis` block, `method="cmi"`): num_per_class, batch_size, num_steps, latent_dim,
generator_width, learning_rate, weights {bn, cls, adv, contrastive}, temperature, bank_size,
num_negatives, head_dim, flip, student, student_steps, student_learning_rate, generator,
pixel_learning_rate.

References:
  Fang, Song, Wang, Shen, Wang and Song, "Contrastive Model Inversion for Data-Free Knowledge
  Distillation", IJCAI 2021, eqs. 1-10 and Algorithm 1; the CMI code base (zju-vipa/DataFree)
  for what the paper leaves open.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxinv import augment, losses, models, train
from jaxinv.models.cmi import CMIGenerator, ProjectionHead, init_generator
from jaxinv.synthesis import online_student
from jaxinv.synthesis.method import Phase, SynthesisMethod
from jaxinv.teacher import Teacher
from jaxinv.validation import check_loss_weights, is_count

WEIGHTS = ("bn", "cls", "adv", "contrastive")
KD_TEMPERATURE = 20.0


def _features(stats: list[dict]) -> jax.Array:
    """(N, Σ C_l): every BN layer's per-example input means, side by side."""
    return jnp.concatenate([s["example_mean"] for s in stats], axis=-1)


def cmi_method(teacher: Teacher, num_examples: int, *, batch_size: int = 256,
               num_steps: int = 200, latent_dim: int = 256, generator_width: int = 128,
               learning_rate: float = 1e-3, weights: dict | None = None,
               temperature: float = 0.1, bank_size: int = 40960, num_negatives: int = 4096,
               head_dim: int = 256, flip: bool = True, student: str = "bn_cnn_half",
               student_steps: int = 400, student_learning_rate: float = 1e-3,
               generator: bool = True, pixel_learning_rate: float = 0.1
               ) -> SynthesisMethod:
    """CMI as a stateful :class:`SynthesisMethod`; inputs {"targets" (num_examples, K)},
    consumed a batch per round (num_examples / batch_size rounds).

    Args:
      teacher: the frozen classifier; it must have BatchNorm layers.
      num_examples: the pool's size, a multiple of batch_size.
      batch_size, num_steps: images per round and generator steps per round (the reference:
        256 and 200).
      latent_dim, generator_width: z's size (256) and the generator's first width (128).
      learning_rate: Adam (β 0.5, 0.999) of the generator, z and the head (1e-3).
      weights: {"bn", "cls", "adv", "contrastive"} ≥ 0 (the reference: 1, 1, 0.5, 0.8).
      temperature: τ of the contrastive loss (0.1).
      bank_size, num_negatives: features the bank keeps (40,960) and draws per step (4,096).
      head_dim: the head's output width (256).
      flip: random horizontal flips in both views (off for digits).
      student, student_steps, student_learning_rate: the student trained between rounds
        (a `jaxinv.models` name; Adam).
      generator: False optimises each batch's pixels directly with the same objective, with
        DeepInversion's parametrisation (from U(0, 1), Adam at `pixel_learning_rate` with β
        0.5, 0.99, clipped to [0, 1] after every step; no TV prior or roll, the views being
        CMI's): the "w/o generator" row of the paper's Table 2.

    Raises:
      TeacherLayerError: the teacher has no BatchNorm layer.
      ValueError: settings it cannot run (see :func:`check_config`).
    """
    weights = dict(weights or {"bn": 1.0, "cls": 1.0, "adv": 0.5, "contrastive": 0.8})
    check_loss_weights(weights, WEIGHTS)
    _check_sizes(num_examples, batch_size, bank_size, num_negatives, teacher.image_shape)
    _, stats = jax.eval_shape(teacher.batchnorm_statistics,
                              jnp.zeros((2, *teacher.image_shape)))
    feature_dim = sum(s["mean"].shape[-1] for s in stats)
    generator_module = CMIGenerator(tuple(teacher.image_shape), width=generator_width)
    head = ProjectionHead(out_dim=head_dim)
    student_model = models.get_model(student, num_classes=teacher.num_classes)
    # What a round optimises: the generator and z (the reference's Adam), or the pixels
    # (DeepInversion's Adam).
    trainable_tx = (optax.adam(learning_rate, b1=0.5, b2=0.999) if generator
                    else optax.adam(pixel_learning_rate, b1=0.5, b2=0.99))
    head_tx = optax.adam(learning_rate, b1=0.5, b2=0.999)
    student_tx = optax.adam(student_learning_rate)
    global_view = augment.AugmentConfig(translate=0.125, hflip=flip)
    local_view = augment.AugmentConfig(scale=0.5, translate=0.25, hflip=flip)
    student_apply = models.apply_fn(student_model)

    def render(trainable):
        if not generator:
            return trainable["pixels"]
        return generator_module.apply(trainable["generator"], trainable["z"],
                                      mutable=["batch_stats"])[0]

    def fresh(rng):
        """A new generator and latent codes, or new pixels, for one batch."""
        generator_rng, z_rng = jax.random.split(rng)
        if not generator:
            return {"pixels": jax.random.uniform(z_rng, (batch_size, *teacher.image_shape))}
        return {"generator": init_generator(generator_module, generator_rng, latent_dim),
                "z": jax.random.normal(z_rng, (batch_size, latent_dim))}

    def init(rng: jax.Array, inputs: dict) -> dict:
        head_rng, student_rng, trainable_rng = jax.random.split(rng, 3)
        head_params = head.init(head_rng, jnp.zeros((1, feature_dim)))
        trainable = fresh(trainable_rng)  # replaced at the start of every round
        return {"pool": jnp.zeros((num_examples, *teacher.image_shape)),
                "round": jnp.zeros((), jnp.int32),
                "bank": jnp.zeros((bank_size, feature_dim)),
                "bank_count": jnp.zeros((), jnp.int32),
                "head": head_params, "head_opt": head_tx.init(head_params),
                "trainable": trainable, "trainable_opt": trainable_tx.init(trainable),
                "student": train.init_model_state(student_model, student_tx, student_rng,
                                                  teacher.image_shape),
                "inputs": inputs}

    def objective(trainable, head_params, teacher_variables, student_variables, targets,
                  bank, bank_count, rng):
        view_rng, local_rng, negative_rng = jax.random.split(rng, 3)
        images = render(trainable)
        global_images = augment.augment_batch(view_rng, images, global_view)
        local_images = augment.augment_batch(local_rng, images, local_view)
        logits, global_stats = teacher.batchnorm_statistics(global_images, teacher_variables)
        _, local_stats = teacher.batchnorm_statistics(local_images, teacher_variables)
        student_logits = student_apply(student_variables, global_images)
        inversion = (weights["bn"] * losses.batchnorm_statistics_loss(global_stats)
                     + weights["cls"] * losses.soft_cross_entropy(logits, targets).mean()
                     + weights["adv"] * losses.adversarial_divergence(logits, student_logits))
        rows = jax.random.randint(negative_rng, (num_negatives,), 0,
                                  jnp.maximum(jnp.minimum(bank_count, bank_size), 1))
        global_embeddings = jax.lax.stop_gradient(
            head.apply(head_params, _features(global_stats)))
        negatives = jnp.concatenate([global_embeddings, head.apply(head_params, bank[rows])])
        mask = jnp.concatenate([jnp.ones(batch_size, bool),
                                jnp.full(num_negatives, bank_count > 0)])
        contrastive = losses.instance_contrastive_loss(
            head.apply(head_params, _features(local_stats)), global_embeddings, negatives,
            temperature=temperature, negative_mask=mask)
        return inversion + weights["contrastive"] * contrastive

    def draw(state, teacher_variables, rng):
        """A fresh generator and z (or fresh pixels) for this round's batch."""
        del teacher_variables
        trainable = fresh(rng)
        return {**state, "trainable": trainable,
                "trainable_opt": trainable_tx.init(trainable)}, {}

    def invert(state, teacher_variables, rng):
        """One Adam step of the generator and z (or pixels) and of the head."""
        targets = jax.lax.dynamic_slice_in_dim(state["inputs"]["targets"],
                                               state["round"] * batch_size, batch_size)
        trainable, head_params = state["trainable"], state["head"]
        value, (grads, head_grads) = jax.value_and_grad(objective, argnums=(0, 1))(
            trainable, head_params, teacher_variables, state["student"].variables, targets,
            state["bank"], state["bank_count"], rng)
        updates, trainable_opt = trainable_tx.update(grads, state["trainable_opt"], trainable)
        head_updates, head_opt = head_tx.update(head_grads, state["head_opt"], head_params)
        trainable = optax.apply_updates(trainable, updates)
        if not generator:
            trainable = {"pixels": jnp.clip(trainable["pixels"], 0.0, 1.0)}
        return ({**state, "trainable": trainable, "trainable_opt": trainable_opt,
                 "head": optax.apply_updates(head_params, head_updates), "head_opt": head_opt},
                {"loss": value})

    def pool_batch(state, teacher_variables, rng):
        """The batch's last iterate joins the pool, its global view's features the bank."""
        images = render(state["trainable"])
        pool = jax.lax.dynamic_update_slice_in_dim(state["pool"], images,
                                                   state["round"] * batch_size, 0)
        _, stats = teacher.batchnorm_statistics(augment.augment_batch(rng, images, global_view),
                                                teacher_variables)
        slots = (state["bank_count"] + jnp.arange(batch_size)) % bank_size
        return ({**state, "pool": pool, "round": state["round"] + 1,
                 "bank": state["bank"].at[slots].set(_features(stats)),
                 "bank_count": state["bank_count"] + batch_size}, {})

    def distil(state, teacher_variables, rng):
        """One KD step of the student on a batch of the pool so far."""
        student_state, loss = online_student.distil_step(
            student_model, student_tx, teacher, teacher_variables, state["student"],
            state["pool"], state["round"] * batch_size, rng, batch_size=batch_size,
            temperature=KD_TEMPERATURE)
        return {**state, "student": student_state}, {"student_loss": loss}

    config = {"batch_size": batch_size, "num_steps": num_steps, "latent_dim": latent_dim,
              "generator_width": generator_width, "learning_rate": learning_rate,
              "weights": weights, "temperature": temperature, "bank_size": bank_size,
              "num_negatives": num_negatives, "head_dim": head_dim, "flip": flip,
              "student": student, "student_steps": student_steps,
              "student_learning_rate": student_learning_rate, "generator": generator,
              "pixel_learning_rate": pixel_learning_rate}
    phases = (Phase("draw", draw), Phase("invert", invert, num_steps),
              Phase("pool", pool_batch), Phase("distil", distil, student_steps))
    return SynthesisMethod.from_phases(phases, name="cmi", init=init,
                                       images=lambda s: s["pool"],
                                       num_steps=num_examples // batch_size, config=config)


def _check_sizes(num_examples: int, batch_size, bank_size, num_negatives,
                 image_shape: tuple[int, int, int]) -> None:
    if not is_count(batch_size, minimum=2):
        raise ValueError(f"synthesis.batch_size must be a whole number ≥ 2 (BatchNorm "
                         f"statistics are a batch's), got {batch_size!r}.")
    if num_examples % batch_size:
        raise ValueError(f"{num_examples} images are not a whole number of batches of "
                         f"{batch_size}; choose num_per_class so that they are.")
    if not (is_count(bank_size) and bank_size >= batch_size):
        raise ValueError(f"synthesis.bank_size {bank_size!r} is smaller than one batch "
                         f"({batch_size}); the memory bank must hold at least a batch.")
    if not is_count(num_negatives):
        raise ValueError(f"synthesis.num_negatives must be a whole number ≥ 1, got "
                         f"{num_negatives!r}.")
    height, width, _ = image_shape
    if height % 4 or width % 4:
        raise ValueError(f"CMI's generator upsamples twice by 2: images of {height}x{width} "
                         "need sides that are multiples of 4.")


def check_config(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
                 num_classes: int) -> None:
    """Refuses settings that cannot run, before a teacher is trained or a file written."""
    check_loss_weights(dict(config.weights), WEIGHTS)
    for key in ("num_per_class", "num_steps", "latent_dim", "generator_width", "head_dim",
                "student_steps"):
        if not is_count(config[key]):
            raise ValueError(f"synthesis.{key} must be a whole number ≥ 1, got {config[key]!r}.")
    _check_sizes(num_examples(config, num_classes), config.batch_size, config.bank_size,
                 config.num_negatives, image_shape)
    if not isinstance(config.generator, bool):
        raise ValueError(f"synthesis.generator must be true or false, got {config.generator!r}.")
    for key in ("learning_rate", "temperature", "student_learning_rate", "pixel_learning_rate"):
        if not (math.isfinite(config[key]) and config[key] > 0):
            raise ValueError(f"synthesis.{key} must be > 0, got {config[key]}.")
    models.get_model(config.student, num_classes=num_classes)


def num_examples(config: ml_collections.ConfigDict, num_classes: int) -> int:
    """num_per_class images of every class."""
    return config.num_per_class * num_classes


def build(teacher: Teacher, config: ml_collections.ConfigDict
          ) -> tuple[SynthesisMethod, dict, dict]:
    """The method, inputs {"targets"} and metadata {"class"}; classes are shuffled over the
    examples (seeded), so that every batch holds a mix of classes as the reference's does."""
    targets, classes = online_student.shuffled_class_targets(teacher.num_classes,
                                                             config.num_per_class, config.seed)
    method = cmi_method(
        teacher, len(classes), batch_size=config.batch_size, num_steps=config.num_steps,
        latent_dim=config.latent_dim, generator_width=config.generator_width,
        learning_rate=config.learning_rate, weights=dict(config.weights),
        temperature=config.temperature, bank_size=config.bank_size,
        num_negatives=config.num_negatives, head_dim=config.head_dim, flip=config.flip,
        student=config.student, student_steps=config.student_steps,
        student_learning_rate=config.student_learning_rate, generator=config.generator,
        pixel_learning_rate=config.pixel_learning_rate)
    return method, {"targets": targets}, {"class": classes}


def smoke_config() -> ml_collections.ConfigDict:
    """A seconds-scale CMI block, for the contract test and smoke runs."""
    return ml_collections.ConfigDict(dict(
        method="cmi", num_per_class=2, batch_size=4, num_steps=48, latent_dim=8,
        generator_width=16, learning_rate=1e-2,
        weights={"bn": 0.1, "cls": 3.0, "adv": 0.5, "contrastive": 0.8}, temperature=0.1,
        bank_size=8, num_negatives=8, head_dim=16, flip=False, student="bn_cnn_half",
        student_steps=4, student_learning_rate=1e-3, generator=True, pixel_learning_rate=0.1,
        checkpoint_every=2, seed=0))
