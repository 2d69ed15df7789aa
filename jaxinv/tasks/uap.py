"""Universal adversarial perturbations from a generator trained on a TransferSet (Table 10).

A generator (`jaxinv.models.uap_generator`) maps z ~ U[-1, 1]^latent_dim to perturbations in
the l∞ ε-ball. It is trained on images of a source set, each batch of `batch_size` images
paired with as many fresh z, to minimise

  fooling + α · diversity,
  fooling   = −log(1 − mean_i p(c_i | clip(x_i + δ_i))),  c_i the teacher's clean prediction;
  diversity = −mean_i ‖f(clip(x_i + δ_i)) − f(clip(x_i + δ_π(i)))‖²,  π a shuffle of the batch,

with f the teacher's penultimate features: the fooling and diversity losses as NAG (Mopuri et
al., CVPR 2018) and AAA (Mopuri et al., ECCV 2018) define them. (AAA's released code
optimises neither; it maximises a feature-norm term instead. This follows the papers.)

Sources: the run's TransferSet (Data Impressions), a baseline synthesised by the `baseline`
synthesis block (Class Impressions), and the real training images (the ceiling the paper
lacks); every source gets the same number of generator steps, so budgets match. A perturbation
drawn uniformly from the same ε-ball, untrained, is the floor.

Evaluation, on the real test set: the fooling rate, the % of test images whose predicted label
changes when a perturbation is added (and the result clipped to [0, 1]), and the accuracy under
it, each averaged over `num_eval_perturbations` perturbations from fixed latents.

`uap` block: eps_values (each in (0, 1]), latent_dim, alpha, widths (the generator's), seed,
num_seeds, batch_size, num_steps, checkpoint_every, log_every, optimizer, sources (a subset of
SOURCES), baseline (a synthesis block), num_eval_perturbations, test_limit, eval_batch_size.

References:
  Nayak et al., "Mining Data Impressions from Deep Models as Substitute for the Unavailable
  Training Data", TPAMI 2021, §4.4 and Table 10.
  Mopuri et al., "Ask, Acquire, and Attack: Data-free UAP Generation using Class
  Impressions", ECCV 2018; "NAG: Network for Adversary Generation", CVPR 2018.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxinv import data, figures, parallel, report, synthesis, tasks, train
from jaxinv.models.uap_generator import UAPGenerator
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.tasks.distill import seed_spread
from jaxinv.teacher import Teacher
from jaxinv.validation import is_count

SOURCES = ("data_impressions", "class_impressions", "real")
BLOCK_KEYS = ("eps_values", "latent_dim", "alpha", "widths", "seed", "num_seeds", "batch_size",
              "num_steps", "checkpoint_every", "log_every", "optimizer", "sources", "baseline",
              "num_eval_perturbations", "test_limit", "eval_batch_size")


def uap_loss(teacher: Teacher, teacher_variables: dict, images: jax.Array,
             perturbations: jax.Array, rng: jax.Array, alpha: float) -> tuple[jax.Array, dict]:
    """fooling + α · diversity (module docstring) for images (N, H, W, C) in [0, 1] and
    perturbations (N, H, W, C); returns the loss and both terms."""
    clean = jax.lax.stop_gradient(teacher.logits(images, teacher_variables)).argmax(-1)
    perturbed = jnp.clip(images + perturbations, 0.0, 1.0)
    probs = jax.nn.softmax(teacher.logits(perturbed, teacher_variables))
    clean_prob = jnp.take_along_axis(probs, clean[:, None], axis=-1)[:, 0]
    fooling = -jnp.log(jnp.maximum(1.0 - clean_prob.mean(), 1e-12))
    shuffled = jnp.clip(images + perturbations[jax.random.permutation(rng, len(images))],
                        0.0, 1.0)
    distance = jnp.sum(jnp.square(teacher.features(perturbed, teacher_variables)
                                  - teacher.features(shuffled, teacher_variables)), axis=-1)
    diversity = -distance.mean()
    return fooling + alpha * diversity, {"fooling": fooling, "diversity": diversity,
                                         "clean_prob": clean_prob.mean()}


def generator_step(generator: UAPGenerator, tx, teacher: Teacher, latent_dim: int,
                   alpha: float) -> train.StepFn:
    """A `fit` step: fresh z for the batch of source images, one Adam step of the generator.
    `context` is the teacher's variables."""
    def step_fn(models_state, batch, rng, context, step):
        del step
        z_rng, shuffle_rng, dropout_rng = jax.random.split(rng, 3)
        images = batch["images"]
        z = jax.random.uniform(z_rng, (images.shape[0], latent_dim), minval=-1.0, maxval=1.0)

        def loss_of_perturbations(perturbations):
            return uap_loss(teacher, context, images, perturbations, shuffle_rng, alpha)[0]

        new_state, measurements = train.gradient_step(generator, tx, models_state["generator"],
                                                      z, loss_of_perturbations, dropout_rng)
        return {"generator": new_state}, measurements

    return step_fn


def train_generator(teacher: Teacher, images: np.ndarray, eps: float, block, seed: int,
                    workdir: str, step_callback=None) -> tuple[UAPGenerator, dict]:
    """Trains (or resumes) a generator on `images` at radius `eps`; returns it and its
    variables. `step_callback` is `fit`'s."""
    generator = UAPGenerator(tuple(teacher.image_shape), eps, tuple(block.widths))
    fit_config = ml_collections.ConfigDict(dict(
        seed=seed, batch_size=block.batch_size, num_steps=block.num_steps,
        checkpoint_every=block.checkpoint_every, log_every=block.log_every,
        optimizer=block.optimizer.to_dict()))
    tx = train.make_optimizer(fit_config.optimizer, fit_config.num_steps)
    state = train.fit(
        lambda rng: {"generator": train.init_model_state(generator, tx, rng,
                                                         (block.latent_dim,))},
        generator_step(generator, tx, teacher, block.latent_dim, block.alpha),
        {"images": images}, config=fit_config, workdir=workdir, context=teacher.variables,
        desc=f"UAP generator (seed {seed})", step_callback=step_callback)
    return generator, state.models["generator"].variables


def sample_perturbations(generator: UAPGenerator, variables: dict, latent_dim: int, num: int,
                         seed: int) -> np.ndarray:
    """`num` perturbations (num, H, W, C) from fixed latents of `seed`, in evaluation mode."""
    z = jax.random.uniform(jax.random.key(seed), (num, latent_dim), minval=-1.0, maxval=1.0)
    return np.asarray(generator.apply(variables, z))


def uniform_perturbations(image_shape, eps: float, num: int, seed: int) -> np.ndarray:
    """The floor: `num` perturbations drawn uniformly from the l∞ ε-ball."""
    return np.random.default_rng(seed).uniform(-eps, eps, (num, *image_shape)).astype(np.float32)


def fooling_rate(teacher: Teacher, perturbations: np.ndarray, images: np.ndarray,
                 labels: np.ndarray, batch_size: int) -> dict:
    """Fooling rate and accuracy (%) under each perturbation, averaged over them."""
    clean = train.predict_logits(teacher.model, teacher.variables, images, batch_size).argmax(-1)
    fooled, accuracy = [], []
    for delta in perturbations:
        predicted = train.predict_logits(teacher.model, teacher.variables,
                                         np.clip(images + delta, 0.0, 1.0),
                                         batch_size).argmax(-1)
        fooled.append(100.0 * np.mean(predicted != clean))
        accuracy.append(100.0 * np.mean(predicted == labels))
    return {"fooling_rate": float(np.mean(fooled)), "accuracy": float(np.mean(accuracy)),
            "fooling_rate_per_perturbation": [float(f) for f in fooled]}


def check_config(config: ml_collections.ConfigDict, num_examples: int | None = None) -> None:
    """Refuses a `uap` block that cannot run, before anything is written."""
    block = tasks.task_block(config, "uap", BLOCK_KEYS)
    if not block.eps_values or any(not 0.0 < eps <= 1.0 for eps in block.eps_values):
        raise ValueError(f"uap.eps_values must each be in (0, 1] (images are in [0, 1]; the "
                         f"paper's 10/255 is {10 / 255:.4f}), got {tuple(block.eps_values)}.")
    for key in ("latent_dim", "num_seeds", "num_eval_perturbations", "eval_batch_size"):
        if not is_count(block[key]):
            raise ValueError(f"uap.{key} must be a whole number ≥ 1, got {block[key]!r}.")
    unknown = sorted(set(block.sources) - set(SOURCES))
    if unknown or not block.sources:
        raise ValueError(f"uap.sources must be a non-empty subset of {SOURCES}; got unknown "
                         f"{unknown}.")
    if block.alpha < 0:
        raise ValueError(f"uap.alpha must be ≥ 0, got {block.alpha}.")
    train.check_fit_config(block, num_examples, "uap.")
    parallel.check_divisible(block.eval_batch_size, "uap.eval_batch_size")
    if "class_impressions" in block.sources:
        synthesis.check_config(block.baseline,
                               data.image_shape(config.dataset, config.get("image_size")),
                               data.num_classes(config.dataset))


def _source_images(label: str, transfer_set: TransferSet, teacher: Teacher, config,
                   workdir: str) -> np.ndarray:
    """The images a generator of `label` trains on."""
    if label == "data_impressions":
        return transfer_set.images
    if label == "class_impressions":
        return synthesis.synthesize_from_config(
            teacher, config.uap.baseline, os.path.join(workdir, "baseline_synthesis")).images
    return data.load_dataset(config.dataset, "train", image_size=config.get("image_size")).images


def run(config: ml_collections.ConfigDict, teacher: Teacher, transfer_set: TransferSet,
        workdir: str) -> dict:
    """Trains a generator per ε, source and seed; reports fooling rates against the floor."""
    block = config.uap
    if len(transfer_set) == 0:
        raise ValueError("The TransferSet is empty; synthesise at least one batch of images.")
    transfer_set.check_image_shape(teacher.image_shape, "the teacher")
    test = data.load_dataset(config.dataset, "test", image_size=config.get("image_size"))
    test = data.evaluation_subset(test, block.test_limit)
    images, labels = test.images, test.labels
    seeds = list(range(block.seed, block.seed + block.num_seeds))
    eval_seed = block.seed + 10_000  # the latents every generator is scored on
    results = {"eps_values": list(block.eps_values), "seeds": seeds,
               "num_test_images": int(len(images)), "by_eps": {}}
    sources = {}  # label -> images, loaded (or synthesised) once, when first needed
    for eps in block.eps_values:
        name = f"{round(eps * 255)}/255"
        entry = {"uniform": fooling_rate(teacher, uniform_perturbations(
            teacher.image_shape, eps, block.num_eval_perturbations, eval_seed), images, labels,
            block.eval_batch_size)}
        for label in block.sources:
            per_seed = []
            for seed in seeds:
                where = os.path.join(workdir, f"eps{round(eps * 255)}_{label}_seed{seed}")
                path = os.path.join(where, "results.json")
                if not os.path.exists(path):
                    if label not in sources:
                        sources[label] = _source_images(label, transfer_set, teacher, config,
                                                        workdir)
                    generator, variables = train_generator(teacher, sources[label], eps, block,
                                                           seed, where)
                    perturbations = sample_perturbations(generator, variables, block.latent_dim,
                                                         block.num_eval_perturbations, eval_seed)
                    report.write_json(path, fooling_rate(teacher, perturbations, images,
                                                         labels, block.eval_batch_size))
                    if label == "data_impressions" and seed == seeds[0]:
                        _figure(teacher, perturbations, images, test.class_names, eps,
                                os.path.join(workdir, "figures", f"uaps_eps{round(eps * 255)}.png"))
                per_seed.append(report.read_json(path))
            rates = [r["fooling_rate"] for r in per_seed]
            entry[label] = {"fooling_rate": seed_spread(seeds, rates),
                            "accuracy": seed_spread(seeds, [r["accuracy"] for r in per_seed])}
        results["by_eps"][name] = entry
        if {"data_impressions", "class_impressions"} <= set(block.sources):
            di, ci = entry["data_impressions"]["fooling_rate"], entry["class_impressions"][
                "fooling_rate"]
            entry["di_ahead_of_ci_beyond_spread"] = bool(
                di["mean"] - ci["mean"] > max(di["sd"], ci["sd"]))
    return results


def _figure(teacher: Teacher, perturbations: np.ndarray, images: np.ndarray, class_names,
            eps: float, path: str, num: int = 8) -> None:
    """Fig. 9: sampled UAPs over test images with their clean and fooled predictions."""
    num = min(num, len(perturbations), len(images))
    clean_images = images[:num]
    perturbed = np.clip(clean_images + perturbations[:num], 0.0, 1.0)
    clean = np.asarray(teacher.logits(clean_images)).argmax(-1)
    fooled = np.asarray(teacher.logits(perturbed)).argmax(-1)
    figures.perturbation_grid(perturbations[:num], clean_images, perturbed, clean, fooled,
                              class_names, path, eps)
