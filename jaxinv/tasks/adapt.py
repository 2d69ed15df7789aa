"""Source-free domain adaptation: ADDA with a TransferSet standing in for the source data.

ADDA (Tzeng et al.) adapts a trained source classifier to an unlabelled target domain. The
source encoder and classifier are frozen; a target encoder starts from the source encoder's
weights; a domain discriminator learns to tell source outputs from target outputs, and the
target encoder learns to fool it (the GAN loss with inverted labels). Classification of
target images is the frozen source classifier on the target encoder's features. Data
Impressions make this source-free: the source outputs come from DIs of the source model
instead of the source images (Nayak et al., §4.2).

:func:`adapt` is the algorithm. It is never given target labels; the task reads them only to
evaluate the adapted model on the target test set.

`adapt` block:
  target: dataset of the target domain (same image shape as the source at `image_size`).
  target_sample: unlabelled target training images drawn, seeded (None: all of them).
  discriminator_input: "logits" (the frozen classifier's outputs, as ADDA's code does) or
    "features" (the encoder's output, as a common PyTorch port does).
  batch_size: images per domain per step; num_steps, checkpoint_every, log_every, seed.
  optimizer: of both the discriminator and the target encoder (`train.make_optimizer`);
    ADDA's is Adam, learning rate 2e-4, b1 0.5.
  references: () or ("real_source",), ADDA on the real source images the source model was
    trained on (the ADDA row of Table 7).
  eval_batch_size; tsne_points: target test images (and DIs) in the t-SNE figure (0: none).

References: Tzeng et al., "Adversarial Discriminative Domain Adaptation", CVPR 2017, §4 and
github.com/erictzeng/adda; Nayak et al., "Mining Data Impressions from Deep Models as Substitute
for the Unavailable Training Data", TPAMI 2021, §4.2, Tables 7 and 9, Fig. 6.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxinv import data, figures, losses, models, report, saved_model, tasks, train
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.teacher import Teacher
from jaxinv.validation import is_count

BLOCK_KEYS = ("target", "target_sample", "discriminator_input", "batch_size", "num_steps",
              "checkpoint_every", "log_every", "seed", "optimizer", "references",
              "eval_batch_size", "tsne_points")
DISCRIMINATOR_INPUTS = ("logits", "features")
REFERENCES = ("real_source",)
SOURCE_DOMAIN, TARGET_DOMAIN = 1, 0  # the discriminator's labels


def check_encoder_split(model: nn.Module, variables: dict, head_name: str = "head") -> None:
    """Refuses a model without the encoder/classifier split ADDA adapts: an `encode(images)`
    method giving the features and a final dense layer `head_name` on them."""
    problems = []
    if not callable(getattr(model, "encode", None)):
        problems.append(f"{type(model).__name__} has no `encode(images)` method")
    if head_name not in variables.get("params", {}):
        problems.append(f"its params have no final layer {head_name!r}")
    if problems:
        raise ValueError(
            "ADDA adapts the encoder of a source model and keeps its classifier: "
            + "; ".join(problems) + ". Give the module an `encode` method that returns the "
            "features its `head` Dense layer classifies (as models.AddaLeNet does), or use "
            "model='adda_lenet'.")


def check_domains(source_shape: tuple[int, ...], target_shape: tuple[int, ...],
                  what: str = "target") -> None:
    """Refuses source and target images of different shapes, saying how to match them."""
    if tuple(source_shape) != tuple(target_shape):
        raise ValueError(
            f"Source images have shape (H, W, C) = {tuple(source_shape)} but {what} images "
            f"have {tuple(target_shape)}; ADDA needs one shape for both domains. Resize both "
            "to the same size (image_size=28 in a config, or data.resize_images), and use a "
            "gray variant (e.g. dataset 'svhn_gray') to match one channel with three.")


def _split_head(params: dict, head_name: str) -> tuple[dict, dict]:
    encoder = {name: value for name, value in params.items() if name != head_name}
    return encoder, params[head_name]


def domain_outputs_fn(model: nn.Module, head_name: str, discriminator_input: str
                      ) -> Callable[[dict, dict, jax.Array], jax.Array]:
    """`fn(encoder_variables, head_params, images) -> (N, D)`: what the discriminator sees.

    Encoder variables are the model's variables without the head; "features" gives the
    `encode` output, "logits" the head applied to it.
    """
    def fn(encoder_variables, head_params, images):
        variables = {"params": {**encoder_variables["params"], head_name: head_params},
                     "batch_stats": encoder_variables["batch_stats"]}
        method = "encode" if discriminator_input == "features" else None
        return models.apply_fn(model)(variables, images, method=method)

    return fn


def adda_step(model: nn.Module, discriminator: nn.Module, tx: optax.GradientTransformation,
              head_name: str, discriminator_input: str) -> train.StepFn:
    """One ADDA step on {"source": {"images"}, "target": {"images"}} batches.

    The discriminator takes a step to tell the frozen source encoder's outputs (label 1) from
    the target encoder's (label 0); then the target encoder takes a step so that the updated
    discriminator calls its outputs source (inverted labels). `context` holds the frozen
    source variables; `models` holds "encoder" (without the head) and "discriminator".
    """
    outputs = domain_outputs_fn(model, head_name, discriminator_input)
    discriminate = models.apply_fn(discriminator)

    def step_fn(models_state, batch, rng, context, step):
        del rng, step  # no dropout: ADDA's networks have none while adapting
        source_encoder, head = _split_head(context["params"], head_name)
        source_outputs = outputs({"params": source_encoder,
                                  "batch_stats": context["batch_stats"]}, head,
                                 batch["source"]["images"])
        encoder = models_state["encoder"]
        target_outputs = outputs(encoder.variables, head, batch["target"]["images"])
        num_source, num_target = len(source_outputs), len(target_outputs)
        domains = jnp.concatenate([jnp.full(num_source, SOURCE_DOMAIN),
                                   jnp.full(num_target, TARGET_DOMAIN)])
        both = jnp.concatenate([source_outputs, jax.lax.stop_gradient(target_outputs)])

        def discriminator_loss(params):
            logits = discriminate({"params": params}, both)
            return losses.cross_entropy(logits, domains), logits

        critic = models_state["discriminator"]
        (d_loss, d_logits), d_grads = jax.value_and_grad(discriminator_loss, has_aux=True)(
            critic.params)
        d_updates, d_opt_state = tx.update(d_grads, critic.opt_state, critic.params)
        critic = critic.replace(params=optax.apply_updates(critic.params, d_updates),
                                opt_state=d_opt_state)

        def mapping_loss(params):
            fooled = outputs({"params": params, "batch_stats": encoder.batch_stats}, head,
                             batch["target"]["images"])
            logits = discriminate({"params": critic.params}, fooled)
            return losses.cross_entropy(logits, jnp.full(num_target, SOURCE_DOMAIN))

        m_loss, m_grads = jax.value_and_grad(mapping_loss)(encoder.params)
        m_updates, m_opt_state = tx.update(m_grads, encoder.opt_state, encoder.params)
        encoder = encoder.replace(params=optax.apply_updates(encoder.params, m_updates),
                                  opt_state=m_opt_state)
        return {"encoder": encoder, "discriminator": critic}, {
            "loss": m_loss, "discriminator_loss": d_loss,
            "discriminator_accuracy": jnp.mean(d_logits.argmax(-1) == domains),
            "mapping_grad_norm": optax.tree.norm(m_grads)}

    return step_fn


def adapt(model: nn.Module, source_variables: dict, source_images: np.ndarray,
          target_images: np.ndarray, *, config: ml_collections.ConfigDict, workdir: str,
          head_name: str = "head",
          step_callback: Callable[[int, dict], None] | None = None) -> dict:
    """Adapts a source classifier to unlabelled target images with ADDA; resumes in `workdir`.

    Args:
      model, source_variables: the source classifier; the module has an `encode` method and
        a final dense layer `head_name` (see :func:`check_encoder_split`). Left unchanged.
      source_images: (N_s, H, W, C) in [0, 1], standing in for the source domain: Data
        Impressions of the source model, or real source images.
      target_images: (N_t, H, W, C) in [0, 1], unlabelled; same (H, W, C) as the source.
      config: `batch_size` (per domain), `num_steps`, `checkpoint_every`, `log_every`,
        `seed`, `optimizer`, `discriminator_input` (see the module docstring).
      workdir: checkpoints and metrics; a rerun resumes with identical results.
      head_name: name of the classifier layer in `source_variables["params"]`.
      step_callback: called as `(step, measurements)` after every step.

    Returns:
      Variables of the adapted classifier: the target encoder with the source head.

    Raises:
      ValueError: no encoder/classifier split, images of different shapes, fewer images than
        one batch in either domain, or an unknown `discriminator_input`.
    """
    check_encoder_split(model, source_variables, head_name)
    check_domains(source_images.shape[1:], target_images.shape[1:])
    for what, images in (("source", source_images), ("target", target_images)):
        if len(images) < config.batch_size:
            raise ValueError(f"The {what} set has {len(images)} images, fewer than one batch "
                             f"(adapt.batch_size = {config.batch_size}); give more images or "
                             "a smaller batch_size.")
    if config.discriminator_input not in DISCRIMINATOR_INPUTS:
        raise ValueError(f"adapt.discriminator_input must be one of {DISCRIMINATOR_INPUTS}, "
                         f"got {config.discriminator_input!r}.")
    discriminator = models.get_model("adda_discriminator")
    tx = train.make_optimizer(config.optimizer, config.num_steps)
    encoder_params, head = _split_head(source_variables["params"], head_name)
    output_shape = jax.eval_shape(
        domain_outputs_fn(model, head_name, config.discriminator_input),
        {"params": encoder_params, "batch_stats": source_variables["batch_stats"]}, head,
        jnp.zeros((1, *source_images.shape[1:]), jnp.float32)).shape

    def init_fn(rng):
        critic = discriminator.init(rng, jnp.zeros(output_shape, jnp.float32))["params"]
        # Copies, so that donating the state never invalidates the caller's source variables.
        params = jax.tree.map(jnp.array, encoder_params)
        return {"encoder": train.ModelState(
                    params=params, opt_state=tx.init(params),
                    batch_stats=jax.tree.map(jnp.array, source_variables["batch_stats"])),
                "discriminator": train.ModelState(params=critic, batch_stats={},
                                                  opt_state=tx.init(critic))}

    state = train.fit(init_fn,
                      adda_step(model, discriminator, tx, head_name, config.discriminator_input),
                      {"source": {"images": source_images}, "target": {"images": target_images}},
                      config=config, workdir=workdir, context=source_variables, desc="adapt",
                      step_callback=step_callback)
    encoder = jax.device_get(state.models["encoder"])
    return {"params": {**encoder.params, head_name: source_variables["params"][head_name]},
            "batch_stats": encoder.batch_stats}


def _block(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    return tasks.task_block(config, "adapt", BLOCK_KEYS)


def check_config(config: ml_collections.ConfigDict, num_examples: int | None = None) -> None:
    """Refuses an `adapt` block that cannot run, before anything is written."""
    block = _block(config)
    data.check_dataset_name(block.target)
    image_size = config.get("image_size")
    check_domains(data.image_shape(config.dataset, image_size),
                  data.image_shape(block.target, image_size))
    model_name = _source_model_name(config)
    model = models.get_model(model_name, num_classes=data.num_classes(config.dataset))
    if not callable(getattr(model, "encode", None)):
        raise ValueError(f"The source model {model_name!r} has no encoder/classifier split for "
                         "ADDA (an `encode` method and a `head` layer); use "
                         "teacher.model='adda_lenet'.")
    if block.discriminator_input not in DISCRIMINATOR_INPUTS:
        raise ValueError(f"adapt.discriminator_input must be one of {DISCRIMINATOR_INPUTS}, "
                         f"got {block.discriminator_input!r}.")
    unknown = [name for name in block.references if name not in REFERENCES]
    if unknown:
        raise ValueError(f"adapt.references {unknown} are unknown; choose from {REFERENCES}.")
    if block.target_sample is not None and not is_count(block.target_sample):
        raise ValueError(f"adapt.target_sample must be None (all) or a whole number ≥ 1, got "
                         f"{block.target_sample!r}.")
    if not (is_count(block.seed) or block.seed == 0) or not is_count(block.eval_batch_size):
        raise ValueError("adapt.seed must be a whole number ≥ 0 and adapt.eval_batch_size ≥ 1.")
    if not (is_count(block.tsne_points) or block.tsne_points == 0):
        raise ValueError(f"adapt.tsne_points must be a whole number ≥ 0, got "
                         f"{block.tsne_points!r}.")
    sizes = [num_examples, block.target_sample]
    train.check_fit_config(block, min((size for size in sizes if size is not None),
                                      default=None), where="adapt.")


def _source_model_name(config: ml_collections.ConfigDict) -> str:
    """The registry name of the source model: the `teacher_workdir`'s, else `teacher.model`."""
    if config.get("teacher_workdir"):
        return saved_model.read_card(config.teacher_workdir).model
    return config.teacher.model


def _target_train_images(config: ml_collections.ConfigDict) -> np.ndarray:
    """The unlabelled target training images: the labels are dropped here, before adapting."""
    block = config.adapt
    target = data.load_dataset(block.target, "train", image_size=config.get("image_size"))
    if block.target_sample:
        target = data.subsample(target, block.target_sample, block.seed)
    return target.images


def _real_source_images(config: ml_collections.ConfigDict) -> np.ndarray:
    """The source images the source model was trained on, drawn as its training drew them."""
    teacher = config.get("teacher") or {}
    return train.training_set(config.dataset, config.get("image_size"),
                              limit=teacher.get("train_limit"),
                              sample=teacher.get("train_sample"),
                              seed=teacher.get("seed", 0)).images


def run(config: ml_collections.ConfigDict, teacher: Teacher, transfer_set: TransferSet,
        workdir: str) -> dict:
    """Adapts the teacher (the source model) to `adapt.target` on the TransferSet, and on the
    real source images when asked; evaluates everything on the target test set."""
    block = _block(config)
    image_size = config.get("image_size")
    target_test = data.load_dataset(block.target, "test", image_size=image_size)
    source_test = data.load_dataset(config.dataset, "test", image_size=image_size)
    target_images = _target_train_images(config)
    sources = {"data_impressions": transfer_set.images}
    if "real_source" in block.references:
        sources["real_source"] = _real_source_images(config)

    def accuracy(variables):
        return train.evaluate(teacher.model, variables, target_test.images, target_test.labels,
                              block.eval_batch_size)["accuracy"]

    results = {
        "source": config.dataset, "target": block.target,
        "discriminator_input": block.discriminator_input, "num_steps": block.num_steps,
        "num_source_images": {name: int(len(images)) for name, images in sources.items()},
        "num_target_images": int(len(target_images)),
        "num_target_test_images": int(len(target_test.labels)),
        "source_model_source_test_accuracy": train.evaluate(
            teacher.model, teacher.variables, source_test.images, source_test.labels,
            block.eval_batch_size)["accuracy"],
        "source_only": accuracy(teacher.variables),
    }
    adapted = {}
    for name, images in sources.items():
        folder = os.path.join(workdir, name)
        path = os.path.join(folder, "results.json")
        if saved_model.is_saved_model(folder) and os.path.exists(path):
            adapted[name] = saved_model.load_model(folder)[1]
        else:
            adapted[name] = adapt(teacher.model, teacher.variables, images, target_images,
                                  config=block, workdir=folder, head_name=teacher.head_name)
            saved_model.save_model(
                os.path.join(folder, saved_model.MODEL_DIR),
                saved_model.ModelCard(model=_source_model_name(config),
                                      num_classes=teacher.num_classes,
                                      image_shape=teacher.image_shape, dataset=block.target,
                                      image_size=teacher.image_shape[0]), adapted[name])
            report.write_json(path, {"target_test_accuracy": accuracy(adapted[name])})
        results[f"adda_{name}"] = report.read_json(path)["target_test_accuracy"]
    if block.tsne_points:
        results["tsne_figure"] = _tsne_figure(teacher, adapted["data_impressions"],
                                              transfer_set, target_test, block.tsne_points,
                                              os.path.join(workdir, "figures", "tsne.png"))
    if report.is_writer():
        report.write_text(os.path.join(workdir, "table.md"), results_table(results) + "\n")
    return results


def _tsne_figure(teacher: Teacher, adapted: dict, transfer_set: TransferSet,
                 target_test: data.Dataset, num_points: int, path: str) -> str:
    """Fig. 6: t-SNE of encoder features of DIs and target test images, before and after."""
    rng = np.random.default_rng(0)
    picks = {name: np.sort(rng.choice(size, min(num_points, size), replace=False))
             for name, size in (("source", len(transfer_set)), ("target", len(target_test.labels)))}
    encode = jax.jit(lambda v, x: models.apply_fn(teacher.model)(v, x, method="encode"))
    source_images = transfer_set.images[picks["source"]]
    target_images = target_test.images[picks["target"]]

    def features(variables, images):
        return np.asarray(encode(variables, images))

    panels = {
        "before adaptation": (features(teacher.variables, source_images),
                              features(teacher.variables, target_images)),
        "after adaptation": (features(teacher.variables, source_images),
                             features(adapted, target_images)),
    }
    classes = (transfer_set.targets[picks["source"]].argmax(-1),
               target_test.labels[picks["target"]])
    return figures.tsne_domains(panels, classes, ("source DIs", f"target ({target_test.name})"),
                                path)


def results_table(results: dict) -> str:
    """Target test accuracy (%) of the source model and of ADDA on each source set."""
    rows = [("source only (no adaptation)", f"{results['source_only']:.2f}")]
    rows += [(f"ADDA, {name.replace('_', ' ')}", f"{results[f'adda_{name}']:.2f}")
             for name in ("real_source", "data_impressions") if f"adda_{name}" in results]
    return (f"{results['source']} → {results['target']}, target test accuracy (%); the "
            f"discriminator sees the {results['discriminator_input']}.\n\n"
            + report.markdown_table(["model", "accuracy %"], rows))
