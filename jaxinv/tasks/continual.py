"""Class-incremental learning: Data Impressions with dual distillation, and its baselines.

A sequence of steps each adds new classes. At step k only the labelled data of the new classes
and the model of step k-1 exist. The method of Nayak et al. (§4.3) trains a model on the new
classes alone, synthesises Data Impressions of the old classes from the previous model (a fixed
budget shared by all old classes), and consolidates the two into one model over every class
seen so far with the double distillation loss of Deep Model Consolidation (`losses.
double_distillation_loss`) on the DIs and the new images, augmented, starting from the previous
model's weights, with no cross-entropy. :func:`dual_distillation_step` is that step: it is
given the previous model and the new classes' data, nothing else.

The run's teacher is the model of step 0 (its `teacher` block names the first step's
`classes`), and the pipeline's TransferSet is the DIs of step 1; later steps synthesise their
own DIs from the consolidated model with the run's `synthesis` block.

Baselines (Fig. 8), with the same model, budgets and class order:
  finetune: the previous model, its head widened, trained on the new classes' data;
  fixed_representation: the same with everything but the new head rows frozen;
  lwf: Learning without Forgetting: cross-entropy of the new classes' outputs on the new
    data plus distillation (τ = 2) of the previous model's responses into the old classes'
    outputs; prediction is the argmax over all outputs;
  joint: trained from scratch on all real data of every class seen so far (the upper bound;
    the one method that reads old-class data).

`continual` block:
  steps: the class groups in order, e.g. ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9)).
  methods: names from METHODS.
  di_budget: DIs per step, shared by all old classes (num_per_class = di_budget // old).
  train: fit settings of the models trained on real data (batch_size, num_steps,
    checkpoint_every, log_every, optimizer, augment); `joint` scales num_steps by classes
    seen / new classes, for as many epochs; consolidate: the settings of consolidation.
  lwf_temperature, lwf_weight; seed; eval_batch_size.

References: Nayak et al., "Mining Data Impressions from Deep Models as Substitute for the
Unavailable Training Data", TPAMI 2021, §4.3, Fig. 8; Zhang et al., "Class-incremental
Learning via Deep Model Consolidation", WACV 2020; Li and Hoiem, "Learning without
Forgetting", ECCV 2016.
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxinv import (
    augment,
    data,
    figures,
    losses,
    models,
    report,
    saved_model,
    synthesis,
    tasks,
    train,
)
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.teacher import Teacher, from_module
from jaxinv.validation import is_count

METHODS = ("dual_distillation", "finetune", "fixed_representation", "lwf", "joint")
BLOCK_KEYS = ("steps", "methods", "di_budget", "train", "consolidate", "lwf_temperature",
              "lwf_weight", "seed", "eval_batch_size")
FIT_KEYS = ("batch_size", "num_steps", "checkpoint_every", "log_every", "optimizer", "augment")


def _fit_config(settings: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
    fit_config = settings.copy_and_resolve_references()
    with fit_config.unlocked():
        fit_config.seed = seed
    return fit_config


def widened(previous: dict, fresh: dict, head_name: str = "head") -> dict:
    """The previous model's variables with its head widened to the fresh model's classes: old
    rows kept, new rows as freshly initialised. Everything else is the previous model's."""
    params = dict(previous["params"])
    old_head, new_head = previous["params"][head_name], fresh["params"][head_name]
    num_old = old_head["kernel"].shape[-1]
    params[head_name] = {
        "kernel": jnp.concatenate([old_head["kernel"], new_head["kernel"][:, num_old:]], -1),
        "bias": jnp.concatenate([old_head["bias"], new_head["bias"][num_old:]])}
    return {"params": params, "batch_stats": previous["batch_stats"]}


def _new_rows_only(params: dict, num_old: int, head_name: str = "head") -> dict:
    """1 where fixed representation may learn (the new head rows), 0 elsewhere."""
    mask = jax.tree.map(jnp.zeros_like, params)
    head = params[head_name]
    mask[head_name] = {"kernel": jnp.zeros_like(head["kernel"]).at[:, num_old:].set(1.0),
                       "bias": jnp.zeros_like(head["bias"]).at[num_old:].set(1.0)}
    return mask


def _train(module: nn.Module, init_variables: dict | None, images: np.ndarray,
           loss_fn, settings: ml_collections.ConfigDict, seed: int, workdir: str, *,
           context=None, labels: np.ndarray | None = None, mask: dict | None = None,
           desc: str = "train") -> dict:
    """Fits `module` from `init_variables` (None: fresh) on `images` (and `labels`) to
    `loss_fn(logits, batch, context)`, augmented; only where `mask` is 1 when given."""
    fit_config = _fit_config(settings, seed)
    tx = train.make_optimizer(fit_config.optimizer, fit_config.num_steps)
    if mask is not None:
        tx = optax.chain(tx, optax.GradientTransformation(
            lambda params: optax.EmptyState(),
            lambda updates, state, params=None: (jax.tree.map(jnp.multiply, updates, mask),
                                                 state)))
    augment_config = augment.from_config(fit_config.augment)
    # Frozen features keep their BatchNorm statistics too.
    train_mode = mask is None

    def init_fn(rng):
        variables = (models.init_variables(module, rng, images.shape[1:])
                     if init_variables is None else jax.tree.map(jnp.array, init_variables))
        return {"model": train.ModelState(params=variables["params"],
                                          batch_stats=variables["batch_stats"],
                                          opt_state=tx.init(variables["params"]))}

    def step_fn(models_state, batch, rng, context, step):
        del step
        dropout_rng, batch_rng = jax.random.split(rng)
        batch = {**batch, "images": augment.augment_batch(batch_rng, batch["images"],
                                                          augment_config)}
        new_state, measurements = train.gradient_step(
            module, tx, models_state["model"], batch["images"],
            lambda logits: loss_fn(logits, batch, context), dropout_rng, train=train_mode)
        return {"model": new_state}, measurements

    arrays = {"images": images} if labels is None else {"images": images, "labels": labels}
    state = train.fit(init_fn, step_fn, arrays, config=fit_config, workdir=workdir,
                      context=context, desc=desc)
    return jax.device_get(state.models["model"].variables)


def _cross_entropy(logits, batch, context):
    del context
    return losses.cross_entropy(logits, batch["labels"])


def dual_distillation_step(model_fn, previous: dict, new_images: np.ndarray,
                           new_labels: np.ndarray, impressions: np.ndarray, *,
                           block: ml_collections.ConfigDict, workdir: str) -> dict:
    """One incremental step of Nayak et al.: new model, then consolidation on DIs + new images.

    Args:
      model_fn: `num_classes -> module`, the architecture of every step.
      previous: variables of the previous model, over the K_old classes seen so far.
      new_images: (N, H, W, C) in [0, 1], the new classes' training images.
      new_labels: (N,) in [K_old, K_old + K_new): positions among all classes seen so far.
      impressions: (M, H, W, C) DIs of the old classes from the previous model.
      block: the `continual` block (`train`, `consolidate`, `seed`).
      workdir: `new_model/` and `consolidated/` go there; both resume.

    Returns:
      Variables of the consolidated model over K_old + K_new classes.
    """
    num_old = int(previous["params"]["head"]["kernel"].shape[-1])
    num_new = int(new_labels.max()) + 1 - num_old
    new_module, module = model_fn(num_new), model_fn(num_old + num_new)
    new_variables = _train(new_module, None, new_images, _cross_entropy, block.train,
                           block.seed, os.path.join(workdir, "new_model"),
                           labels=new_labels - num_old, desc="new classes")
    old_apply, new_apply = models.apply_fn(model_fn(num_old)), models.apply_fn(new_module)

    def consolidation_loss(logits, batch, context):
        return losses.double_distillation_loss(logits, old_apply(context["old"], batch["images"]),
                                               new_apply(context["new"], batch["images"]))

    fresh = models.init_variables(module, jax.random.key(block.seed), new_images.shape[1:])
    return _train(module, widened(previous, fresh), np.concatenate([impressions, new_images]),
                  consolidation_loss, block.consolidate, block.seed,
                  os.path.join(workdir, "consolidated"),
                  context={"old": previous, "new": new_variables}, desc="consolidate")


def baseline_step(method: str, model_fn, previous: dict, images: np.ndarray,
                  labels: np.ndarray, *, block: ml_collections.ConfigDict,
                  workdir: str) -> dict:
    """One step of a baseline on labelled images (positions among all classes seen so far):
    the new classes' data, or for `joint` all data seen so far."""
    num_old = int(previous["params"]["head"]["kernel"].shape[-1])
    module = model_fn(int(labels.max()) + 1)
    fresh = models.init_variables(module, jax.random.key(block.seed), images.shape[1:])
    if method == "joint":
        # As many epochs as the other stages: their data is the new classes', a share
        # (new classes / classes seen) of the joint data.
        settings = block.train.copy_and_resolve_references()
        settings.num_steps = settings.num_steps * module.num_classes // (module.num_classes
                                                                          - num_old)
        return _train(module, None, images, _cross_entropy, settings, block.seed, workdir,
                      labels=labels, desc="joint")
    init = widened(previous, fresh)
    if method == "lwf":
        old_apply = models.apply_fn(model_fn(num_old))

        def lwf_loss(logits, batch, context):
            # Li and Hoiem's two terms: the new classes' outputs learn the labels, the old
            # classes' outputs keep the old model's responses; neither sees the other's.
            return losses.cross_entropy(logits[:, num_old:], batch["labels"] - num_old) + (
                block.lwf_weight * losses.distillation_loss(
                    logits[:, :num_old], old_apply(context, batch["images"]),
                    block.lwf_temperature))

        return _train(module, init, images, lwf_loss, block.train, block.seed, workdir,
                      context=previous, labels=labels, desc="lwf")
    mask = _new_rows_only(init["params"], num_old) if method == "fixed_representation" else None
    return _train(module, init, images, _cross_entropy, block.train, block.seed, workdir,
                  labels=labels, mask=mask, desc=method)


def split_accuracy(module: nn.Module, variables: dict, test: data.Dataset, num_old: int,
                   batch_size: int = 1000) -> dict[str, float]:
    """Accuracy (%) on every class seen so far, on the old ones and on the new ones."""
    predicted = train.predict_logits(module, variables, test.images, batch_size).argmax(-1)
    correct = predicted == test.labels
    old = test.labels < num_old
    return {"all": float(100.0 * correct.mean()),
            "old": float(100.0 * correct[old].mean()) if old.any() else None,
            "new": float(100.0 * correct[~old].mean()) if (~old).any() else None}


def _block(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    return tasks.task_block(config, "continual", BLOCK_KEYS)


def check_config(config: ml_collections.ConfigDict, num_examples: int | None = None) -> None:
    """Refuses a `continual` block that cannot run, before anything is written."""
    block = _block(config)
    num_classes = data.num_classes(config.dataset)
    steps = [data.check_classes(step, num_classes, f"continual.steps[{index}]")
             for index, step in enumerate(block.steps)]
    if len(steps) < 2:
        raise ValueError("continual.steps needs at least two class groups: the first model's "
                         "and one incremental step.")
    flat = [c for step in steps for c in step]
    data.check_classes(flat, num_classes, "continual.steps (all steps together)")
    model_name, first_classes = _first_model(config)
    if first_classes != steps[0]:
        raise ValueError(f"The teacher is the model of the first step: it must be trained on "
                         f"classes {steps[0]} (teacher.classes = {steps[0]}), but its classes "
                         f"are {first_classes}.")
    models.get_model(model_name)
    unknown = [m for m in block.methods if m not in METHODS]
    if unknown or not block.methods:
        raise ValueError(f"continual.methods {list(block.methods)} must name some of {METHODS}.")
    largest_old = len(flat) - len(steps[-1])
    if not is_count(block.di_budget) or block.di_budget < largest_old:
        raise ValueError(f"continual.di_budget = {block.di_budget!r} is smaller than the "
                         f"{largest_old} old classes of the last step; each old class needs "
                         "at least one Data Impression.")
    expected = step_synthesis(config, len(steps[0]), 1).num_per_class
    if config.synthesis.num_per_class != expected:
        raise ValueError(f"synthesis.num_per_class must be the first step's share of "
                         f"di_budget, {expected}, got {config.synthesis.num_per_class}.")
    image_shape = data.image_shape(config.dataset, config.get("image_size"))
    for index in range(2, len(steps)):
        num_old = sum(len(step) for step in steps[:index])
        try:
            synthesis.check_config(step_synthesis(config, num_old, index), image_shape, num_old)
        except ValueError as err:
            raise ValueError(f"The DIs of step {index} ({block.di_budget} shared by {num_old} "
                             f"old classes) cannot be made: {err}") from err
    for name in ("train", "consolidate"):
        missing = [key for key in FIT_KEYS if key not in block[name]]
        if missing:
            raise ValueError(f"continual.{name} lacks {missing}; it needs {list(FIT_KEYS)}.")
        train.check_fit_config(_fit_config(block[name], 0), where=f"continual.{name}.")
        augment.from_config(block[name].augment)
    if not is_count(block.eval_batch_size):
        raise ValueError("continual.eval_batch_size must be a whole number ≥ 1.")


def _first_model(config: ml_collections.ConfigDict) -> tuple[str, tuple[int, ...] | None]:
    """The registry name and classes of the first step's model, the run's teacher: the
    `teacher_workdir` model's card, else the `teacher` block."""
    if config.get("teacher_workdir"):
        card = saved_model.read_card(config.teacher_workdir)
        return card.model, card.classes
    classes = config.teacher.get("classes")
    return config.teacher.model, None if classes is None else tuple(classes)


def step_synthesis(config: ml_collections.ConfigDict, num_old: int,
                   step: int) -> ml_collections.ConfigDict:
    """The `synthesis` block of step `step`: `di_budget` shared by `num_old` classes (rounded
    down to a multiple of the number of βs, which share each class's DIs equally)."""
    block = config.synthesis.copy_and_resolve_references()
    share = len(block.get("betas", ())) if block.get("kind") == "dirichlet" else 1
    block.num_per_class = config.continual.di_budget // num_old // share * share
    block.seed = config.synthesis.seed + step
    return block


def _impressions(config: ml_collections.ConfigDict, model_fn, variables: dict,
                 image_shape, num_old: int, step: int, workdir: str) -> np.ndarray:
    """DIs of the `num_old` old classes from the previous model, the budget shared by them."""
    teacher = from_module(model_fn(num_old), variables, image_shape, dataset=config.dataset)
    return synthesis.synthesize_from_config(teacher, step_synthesis(config, num_old, step),
                                            workdir).images


def run(config: ml_collections.ConfigDict, teacher: Teacher, transfer_set: TransferSet,
        workdir: str) -> dict:
    """Runs every incremental step for every method; each step's models are saved and
    resumed. Returns accuracy on all, old and new classes per step and method."""
    block = _block(config)
    steps = [tuple(step) for step in block.steps]
    image_size = config.get("image_size")
    train_full = data.load_dataset(config.dataset, "train", image_size=image_size)
    test_full = data.load_dataset(config.dataset, "test", image_size=image_size)
    image_shape = teacher.image_shape

    model_name = _first_model(config)[0]

    def model_fn(num_classes):
        return models.get_model(model_name, num_classes=num_classes)

    current = {method: teacher.variables for method in block.methods}
    first_test = data.select_classes(test_full, steps[0])
    first = split_accuracy(teacher.model, teacher.variables, first_test, len(steps[0]),
                           block.eval_batch_size)
    history = {method: [first] for method in block.methods}
    for index in range(1, len(steps)):
        seen = [c for step in steps[:index + 1] for c in step]
        num_old = len(seen) - len(steps[index])
        train_seen = data.select_classes(train_full, seen)
        is_new = train_seen.labels >= num_old
        test_seen = data.select_classes(test_full, seen)
        for method in block.methods:
            folder = os.path.join(workdir, f"step{index}", method)
            model_path = os.path.join(folder, saved_model.MODEL_DIR)
            if saved_model.is_saved_model(folder):
                current[method] = saved_model.load_model(folder)[1]
            else:
                if method == "dual_distillation":
                    impressions = (transfer_set.images if index == 1 else _impressions(
                        config, model_fn, current[method], image_shape, num_old, index,
                        os.path.join(folder, "synthesis")))
                    variables = dual_distillation_step(
                        model_fn, current[method], train_seen.images[is_new],
                        train_seen.labels[is_new], impressions, block=block, workdir=folder)
                elif method == "joint":
                    variables = baseline_step(method, model_fn, current[method],
                                              train_seen.images, train_seen.labels,
                                              block=block, workdir=folder)
                else:
                    variables = baseline_step(method, model_fn, current[method],
                                              train_seen.images[is_new],
                                              train_seen.labels[is_new], block=block,
                                              workdir=folder)
                saved_model.save_model(model_path, saved_model.ModelCard(
                    model=model_name, num_classes=len(seen), image_shape=image_shape,
                    dataset=config.dataset, image_size=image_shape[0], classes=tuple(seen)),
                    variables)
                current[method] = variables
            history[method].append(split_accuracy(model_fn(len(seen)), current[method],
                                                  test_seen, num_old, block.eval_batch_size))
    num_seen = np.cumsum([len(step) for step in steps]).tolist()
    results = {"steps": [list(step) for step in steps], "num_classes_seen": num_seen,
               "accuracy": history}
    if report.is_writer():
        figures.accuracy_curves(num_seen, {m: [h["all"] for h in history[m]]
                                           for m in block.methods},
                                os.path.join(workdir, "figures", "accuracy_vs_classes.png"),
                                xlabel="number of classes seen",
                                ylabel="test accuracy on classes seen (%)",
                                title=f"Class-incremental learning, {config.dataset}")
        report.write_text(os.path.join(workdir, "table.md"), results_table(results) + "\n")
    return results


def results_table(results: dict) -> str:
    """Accuracy on all / old / new classes at each step, one row per step and method."""
    def cell(value):
        return "—" if value is None else f"{value:.2f}"

    rows = []
    for index, num_seen in enumerate(results["num_classes_seen"]):
        for method, history in results["accuracy"].items():
            entry = history[index]
            rows.append((index, num_seen, method, cell(entry["all"]), cell(entry["old"]),
                         cell(entry["new"])))
    return report.markdown_table(["step", "classes seen", "method", "all %", "old %", "new %"],
                                 rows)
