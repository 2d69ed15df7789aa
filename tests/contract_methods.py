"""The methods the shared contract test runs: every registered one, and two test-only ones.

The test-only methods prove the contract's two general capabilities with nothing of any paper:
`generator_method` optimises a generator's weights and latent codes instead of pixels;
`bank_method` carries a memory bank across rounds, re-initialises its generator at every round
and distils a student between rounds, as CMI does. `run_all(workdir)` runs each on a small
random teacher (one with BatchNorm for the methods that match BN statistics); this file is
also run as a script in a subprocess with 1 or 8 devices.
"""

from __future__ import annotations

import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

IMAGE_SHAPE = (8, 8, 1)
NUM_EXAMPLES = 16


class _Generator(nn.Module):
    """latent (d,) -> image (8, 8, 1) in [0, 1]."""

    @nn.compact
    def __call__(self, latents):
        x = nn.relu(nn.Dense(32)(latents))
        return nn.sigmoid(nn.Dense(int(np.prod(IMAGE_SHAPE)))(x)).reshape(-1, *IMAGE_SHAPE)


class _BNTeacher(nn.Module):
    """conv 3x3 -> BatchNorm -> ReLU -> dense `head`: a teacher for methods that match BN
    statistics."""

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = nn.Conv(16, (3, 3))(images)
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
        return nn.Dense(10, name="head")(x.reshape(*x.shape[:-3], -1))


class _Student(nn.Module):
    @nn.compact
    def __call__(self, images):
        return nn.Dense(10)(images.reshape(images.shape[0], -1))


def _soft_ce(logits, targets):
    return -(targets * jax.nn.log_softmax(logits)).sum(-1).mean()


def generator_method(teacher, num_steps: int = 12, latent_dim: int = 4):
    """Per chunk, one generator and one latent code per example, trained by Adam on CE."""
    from jaxinv.synthesis.method import SynthesisMethod

    generator, tx = _Generator(), optax.adam(0.05)

    def render(params):
        return generator.apply(params["generator"], params["latents"])

    def init(rng, inputs):
        latent_rng, generator_rng = jax.random.split(rng)
        latents = jax.random.normal(latent_rng, (inputs["targets"].shape[0], latent_dim))
        params = {"generator": generator.init(generator_rng, latents), "latents": latents}
        return {"params": params, "opt_state": tx.init(params), "inputs": inputs}

    def step(state, teacher_variables, rng):
        del rng

        def loss_fn(params):
            return _soft_ce(teacher.logits(render(params), teacher_variables),
                            state["inputs"]["targets"])

        loss, grads = jax.value_and_grad(loss_fn)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        return ({**state, "params": optax.apply_updates(state["params"], updates),
                 "opt_state": opt_state}, {"loss": loss})

    return SynthesisMethod(name="test_generator", init=init, step=step,
                           images=lambda state: render(state["params"]), num_steps=num_steps,
                           config={"latent_dim": latent_dim})


def bank_method(teacher, batch: int = 4, inner_steps: int = 30, latent_dim: int = 4):
    """Each round, in four phases: a fresh generator (re-initialised from the round's key) is
    fitted to the round's targets, its images fill the next rows of a memory bank, and a
    student carried from round to round takes one KD step on a batch drawn from the whole bank
    so far."""
    from jaxinv.synthesis.method import Phase, SynthesisMethod

    generator, student = _Generator(), _Student()
    generator_tx, student_tx = optax.adam(0.05), optax.adam(0.01)

    def init(rng, inputs):
        num = inputs["targets"].shape[0]
        student_params = student.init(rng, jnp.zeros((1, *IMAGE_SHAPE)))
        latents = jnp.zeros((batch, latent_dim))
        params = generator.init(rng, latents)
        return {"bank": jnp.zeros((num, *IMAGE_SHAPE)), "round": jnp.zeros((), jnp.int32),
                "student": student_params, "student_opt": student_tx.init(student_params),
                "generator": params, "generator_opt": generator_tx.init(params),
                "latents": latents, "inputs": inputs}

    def draw(state, teacher_variables, rng):
        generator_rng, latent_rng = jax.random.split(rng)
        latents = jax.random.normal(latent_rng, (batch, latent_dim))
        params = generator.init(generator_rng, latents)
        return {**state, "generator": params, "generator_opt": generator_tx.init(params),
                "latents": latents}, {}

    def fit_generator(state, teacher_variables, rng):
        targets = jax.lax.dynamic_slice_in_dim(state["inputs"]["targets"],
                                               state["round"] * batch, batch)

        def generator_loss(params):
            return _soft_ce(teacher.logits(generator.apply(params, state["latents"]),
                                           teacher_variables), targets)

        loss, grads = jax.value_and_grad(generator_loss)(state["generator"])
        updates, opt_state = generator_tx.update(grads, state["generator_opt"],
                                                 state["generator"])
        return {**state, "generator": optax.apply_updates(state["generator"], updates),
                "generator_opt": opt_state}, {"loss": loss}

    def fill_bank(state, teacher_variables, rng):
        images = generator.apply(state["generator"], state["latents"])
        bank = jax.lax.dynamic_update_slice_in_dim(state["bank"], images,
                                                   state["round"] * batch, 0)
        return {**state, "bank": bank, "round": state["round"] + 1}, {}

    def distil(state, teacher_variables, rng):
        images = state["bank"][jax.random.randint(rng, (batch,), 0, state["round"] * batch)]
        teacher_probs = jax.nn.softmax(teacher.logits(images, teacher_variables))

        def student_loss(student_params):
            return _soft_ce(student.apply(student_params, images), teacher_probs)

        kd_loss, grads = jax.value_and_grad(student_loss)(state["student"])
        updates, student_opt = student_tx.update(grads, state["student_opt"], state["student"])
        return {**state, "student": optax.apply_updates(state["student"], updates),
                "student_opt": student_opt}, {"student_loss": kd_loss}

    phases = (Phase("draw", draw), Phase("fit", fit_generator, inner_steps),
              Phase("bank", fill_bank), Phase("distil", distil))
    return SynthesisMethod.from_phases(phases, name="test_bank", init=init,
                                       images=lambda state: state["bank"],
                                       num_steps=NUM_EXAMPLES // batch, config={"batch": batch})


def random_teacher(seed: int = 0):
    """digits_cnn with random weights, on 8x8x1 images."""
    from jaxinv import models
    from jaxinv.teacher import from_module

    model = models.get_model("digits_cnn")
    abstract = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0),
                                                            IMAGE_SHAPE))
    rng = np.random.default_rng(seed)
    variables = jax.tree.map(
        lambda s: (rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1]) if s.ndim > 1
                                                      else 10.0)).astype(s.dtype), abstract)
    return from_module(model, variables, IMAGE_SHAPE)


def random_bn_teacher():
    """:class:`_BNTeacher` with flax's initialisation (running statistics 0 and 1)."""
    from jaxinv import models
    from jaxinv.teacher import from_module

    model = _BNTeacher()
    return from_module(model, models.init_variables(model, jax.random.key(0), IMAGE_SHAPE),
                       IMAGE_SHAPE)


# SpaceshipNet on the random BN teacher, which marks no stages: without mSARC (its tests cover
# it on a real teacher), and with more, gentler generator steps and a stronger class term, which
# a random teacher's flat logits need to reach the targets.
_CONTRACT_SETTINGS = {"spaceshipnet": {
    "generator_steps": 12, "generator_learning_rate": 0.01,
    "weights": {"cls": 5.0, "bn": 1.0, "kl": 900.0, "msarc": 0.0}},
    # With the contrastive term, CMI's seconds-scale objective amplifies float rounding: a 1e-7
    # relative change of the teacher's weights moves pixels by 0.7 within one round, so 1 and 8
    # devices (whose convolutions split their sums over different thread counts) could not be
    # compared. test_cmi.py checks the contrastive term, its resume included.
    "cmi": {"weights": {"bn": 0.1, "cls": 3.0, "adv": 0.5, "contrastive": 0.0}}}


def method_cases(teacher, bn_teacher):
    """name -> (method, inputs, metadata, synthesize kwargs, teacher) for every method to check.

    A method that refuses `teacher` for lacking BatchNorm runs on `bn_teacher`.
    """
    from jaxinv import synthesis
    from jaxinv.teacher import TeacherLayerError

    cases = {}
    for name in synthesis.available_methods():
        module = synthesis.get_method_module(name)
        config = module.smoke_config()
        config.update(_CONTRACT_SETTINGS.get(name, {}))
        try:
            case_teacher = teacher
            method, inputs, metadata = module.build(teacher, config)
        except TeacherLayerError:
            case_teacher = bn_teacher
            method, inputs, metadata = module.build(bn_teacher, config)
        cases[name] = (method, inputs, metadata,
                       dict(seed=config.seed, chunk_size=config.get("chunk_size"),
                            steps_per_call=config.get("steps_per_call"),
                            checkpoint_every=config.get("checkpoint_every", 1)), case_teacher)
    # Adaptive DeepInversion: the smoke block with a competing student, a stateful method.
    from jaxinv.synthesis import deepinversion

    config = deepinversion.smoke_config()
    config.update(dict(num_per_class=2, batch_size=4, num_steps=48, competition=1.0))
    method, inputs, metadata = deepinversion.build(bn_teacher, config)
    cases["adaptive_deepinversion"] = (method, inputs, metadata,
                                       dict(seed=config.seed, checkpoint_every=2), bn_teacher)
    classes = np.arange(NUM_EXAMPLES) % 10
    one_hot = {"targets": np.eye(10, dtype=np.float32)[classes]}
    cases["test_generator"] = (generator_method(teacher), one_hot, {"class": classes},
                               dict(seed=1, chunk_size=8, steps_per_call=4), teacher)
    cases["test_bank"] = (bank_method(teacher), one_hot, {"class": classes},
                          dict(seed=2, checkpoint_every=1), teacher)
    return cases


def all_cases():
    """:func:`method_cases` on the two random teachers."""
    return method_cases(random_teacher(), random_bn_teacher())


def run_all(workdir: str) -> dict:
    """{name: TransferSet} of every case, synthesised into `workdir/<name>`."""
    from jaxinv import synthesis

    return {name: synthesis.synthesize(method, teacher, inputs, metadata=metadata,
                                       workdir=os.path.join(workdir, name), **kwargs)
            for name, (method, inputs, metadata, kwargs, teacher) in all_cases().items()}


if __name__ == "__main__":
    jax.config.update("jax_num_cpu_devices", int(sys.argv[1]))
    results = run_all(sys.argv[2])
    np.savez(sys.argv[3], **{f"{name}.{key}": getattr(ts, key) for name, ts in results.items()
                             for key in ("images", "logits")})
    print(jax.device_count())
