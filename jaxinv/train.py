"""One fit loop over a state of several models, and the supervised and distillation steps.

A task describes one training step as a pure function

  step_fn(models, batch, rng, context) -> (models, measurements)

over `models`, a dict of :class:`ModelState` (student, discriminator, generator, ...), a batch
(a dict of arrays sharded over `data`), a key folded from the run seed and the step, and a
read-only `context` (e.g. the teacher's variables) passed as a jit argument, never baked in as
a constant. :func:`fit` owns the rest: the jitted, donated update, sharding, Orbax checkpoints
and resume, JSON metrics and the progress bar. Batches are a pure function of (seed, step), so
a run killed and rerun in the same workdir ends with exactly the parameters of an
uninterrupted one.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm import tqdm

from jaxinv import (
    adversarial_training,
    augment,
    checkpoint,
    data,
    losses,
    models,
    parallel,
    report,
    saved_model,
)
from jaxinv import workdir as workdir_lib
from jaxinv.validation import is_count

_SYNC_EVERY = 20
NO_AUGMENT = augment.AugmentConfig()
StepFn = Callable[[dict, dict, jax.Array, Any, jax.Array], tuple[dict, dict]]


@flax.struct.dataclass
class ModelState:
    """One model's trainable state: its variables and its optimiser's state."""
    params: Any
    batch_stats: Any
    opt_state: Any

    @property
    def variables(self) -> dict:
        """The model variables for `model.apply`."""
        return {"params": self.params, "batch_stats": self.batch_stats}


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes: the step count and every model's state."""
    step: jax.Array
    models: dict[str, ModelState]


def make_optimizer(config: ml_collections.ConfigDict,
                   num_steps: int) -> optax.GradientTransformation:
    """Adam or SGD with a constant, linear, cosine or one-cycle learning rate.

    Args:
      config: has `name` ("adam" | "sgd"), `learning_rate` > 0 (the peak, for "onecycle"),
        `schedule` ("constant" | "linear" | "cosine" | "onecycle"), for SGD `momentum`;
        optional `weight_decay` ≥ 0 and, for Adam, `b1` (default 0.9). "onecycle" is Smith's
        schedule with PyTorch's defaults: a cosine warm-up from lr/25 over the first 30 % of
        the steps, then a cosine decay to lr/25e4 (the learning rate only; momentum is fixed).
      num_steps: total steps, the length of the schedule.
    """
    if not config.learning_rate > 0:
        raise ValueError(f"optimizer.learning_rate must be > 0, got {config.learning_rate}.")
    if config.schedule == "cosine":
        lr = optax.cosine_decay_schedule(config.learning_rate, max(num_steps, 1))
    elif config.schedule == "linear":
        lr = optax.linear_schedule(config.learning_rate, 0.0, max(num_steps, 1))
    elif config.schedule == "constant":
        lr = config.learning_rate
    elif config.schedule == "onecycle":
        lr = optax.cosine_onecycle_schedule(max(num_steps, 1), config.learning_rate,
                                            pct_start=0.3, div_factor=25.0,
                                            final_div_factor=1e4)
    else:
        raise ValueError(f"Unknown optimizer.schedule {config.schedule!r}; "
                         "use 'constant', 'linear', 'cosine' or 'onecycle'.")
    weight_decay = config.get("weight_decay", 0.0)
    if config.name == "adam":
        b1 = config.get("b1", 0.9)
        return (optax.adamw(lr, b1=b1, weight_decay=weight_decay) if weight_decay
                else optax.adam(lr, b1=b1))
    if config.name == "sgd":
        return optax.chain(optax.add_decayed_weights(weight_decay),
                           optax.sgd(lr, momentum=config.get("momentum", 0.9), nesterov=True))
    raise ValueError(f"Unknown optimizer.name {config.name!r}; use 'adam' or 'sgd'.")


def check_input_shape(model: nn.Module, image_shape: tuple[int, ...], what: str = "Model") -> None:
    """Raises a clear error when `model` cannot take images of shape (H, W, C)."""
    if len(image_shape) != 3:
        raise ValueError(f"Images must be (H, W, C); got per-example shape {image_shape}.")
    try:
        jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0), image_shape))
    except Exception as err:  # flax raises assorted shape errors deep inside the model
        raise ValueError(
            f"{what} {type(model).__name__} cannot take images of shape {tuple(image_shape)}: "
            f"{str(err).splitlines()[0][:300]}. Check the dataset's image_size against the "
            "model (LeNet-5 expects 32x32x1).") from err


def init_model_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
                     image_shape: tuple[int, ...]) -> ModelState:
    """A freshly initialised model and its optimiser state."""
    variables = models.init_variables(model, rng, image_shape)
    return ModelState(params=variables["params"], batch_stats=variables["batch_stats"],
                      opt_state=tx.init(variables["params"]))


def apply_model(model: nn.Module, variables: dict, images: jax.Array, *, train: bool,
                rng: jax.Array | None = None) -> tuple[jax.Array, Any]:
    """Logits and updated batch statistics (unchanged when `train` is False or there are none)."""
    apply = models.apply_fn(model)
    rngs = {"dropout": rng} if rng is not None else {}
    if train and variables["batch_stats"]:
        logits, updates = apply(variables, images, train=True, rngs=rngs,
                                mutable=["batch_stats"])
        return logits, updates["batch_stats"]
    return apply(variables, images, train=train, rngs=rngs), variables["batch_stats"]


def gradient_step(model: nn.Module, tx: optax.GradientTransformation, state: ModelState,
                  images: jax.Array, loss_of_logits: Callable[[jax.Array], jax.Array],
                  rng: jax.Array, *, train: bool = True) -> tuple[ModelState, dict]:
    """One optimiser step of `model` on `loss_of_logits(model(images))`, in train mode unless
    `train` is False (frozen BatchNorm statistics, no dropout)."""
    def objective(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        logits, batch_stats = apply_model(model, variables, images, train=train, rng=rng)
        return loss_of_logits(logits), batch_stats

    (loss, batch_stats), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = ModelState(params=optax.apply_updates(state.params, updates),
                           batch_stats=batch_stats, opt_state=opt_state)
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def supervised_step(model: nn.Module, tx: optax.GradientTransformation,
                    augment_config: augment.AugmentConfig = NO_AUGMENT,
                    adversarial: adversarial_training.AdversarialTraining | None = None
                    ) -> StepFn:
    """Cross-entropy on {"images", "labels"} batches of `models["model"]`, augmented per
    example and, with `adversarial`, replaced by attacks on the current model (Madry et al.
    PGD training)."""
    def step_fn(models_state, batch, rng, context, step):
        del context
        dropout_rng, batch_rng = jax.random.split(rng)
        images = augment.augment_batch(batch_rng, batch["images"], augment_config)
        if adversarial is not None:
            # A key of its own, so that plain training keeps the random streams it had.
            images = adversarial.perturb(model, models_state["model"].variables, images,
                                         batch["labels"], jax.random.fold_in(rng, 2), step)
        new_state, measurements = gradient_step(
            model, tx, models_state["model"], images,
            lambda logits: losses.cross_entropy(logits, batch["labels"]), dropout_rng)
        return {"model": new_state}, measurements

    return step_fn


DISTILL_LOSSES = ("kd", "logit_l2")


def distill_step(student: nn.Module, tx: optax.GradientTransformation, teacher_logits_fn,
                 *, temperature: float, scale_by_t2: bool = True,
                 augment_config: augment.AugmentConfig = NO_AUGMENT,
                 loss: str = "kd") -> StepFn:
    """KD of `models["model"]` towards a teacher: eq. 4 of Data Impressions at temperature τ
    (`loss="kd"`), or the l2 distance between the logits themselves (`"logit_l2"`, Data from
    Model's DtM; τ unused).

    Without augmentation the batch carries the teacher's stored {"logits"}; with it, each batch
    is warped per example and `teacher_logits_fn(images, context)` is asked again, inside the
    same jitted step (context: the teacher's variables).
    """
    if loss not in DISTILL_LOSSES:
        raise ValueError(f"Unknown distillation loss {loss!r}; use one of {DISTILL_LOSSES}.")
    def step_fn(models_state, batch, rng, context, step):
        del step
        dropout_rng, batch_rng = jax.random.split(rng)
        if augment_config.is_identity:
            images, teacher_logits = batch["images"], batch["logits"]
        else:
            images = augment.augment_batch(batch_rng, batch["images"], augment_config)
            teacher_logits = teacher_logits_fn(images, context)
        def objective(logits):
            if loss == "logit_l2":
                return losses.logit_distance(logits, teacher_logits)
            return losses.distillation_loss(logits, teacher_logits, temperature, scale_by_t2)

        new_state, measurements = gradient_step(student, tx, models_state["model"], images,
                                                objective, dropout_rng)
        return {"model": new_state}, measurements

    return step_fn


@functools.partial(jax.jit, static_argnums=0)
def _predict(model: nn.Module, variables: dict, images: jax.Array) -> jax.Array:
    return models.apply_fn(model)(variables, images)


def predict_logits(model: nn.Module, variables: dict, images: np.ndarray,
                   batch_size: int = 1000) -> np.ndarray:
    """Logits (N, K) for host images (N, H, W, C) in [0, 1], in sharded batches.

    The last batch is padded up to `batch_size` so that only one shape is ever compiled.
    """
    variables = parallel.replicate(variables)
    outputs = []
    for batch, num_real in data.padded_batches({"images": np.asarray(images, np.float32)},
                                               batch_size):
        outputs.append(np.asarray(_predict(model, variables, batch["images"]))[:num_real])
    return np.concatenate(outputs)


def evaluate(model: nn.Module, variables: dict, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 1000) -> dict[str, float]:
    """Accuracy (%) and mean cross-entropy on host arrays (N, H, W, C) and labels (N,)."""
    logits = predict_logits(model, variables, images, batch_size)
    return {"accuracy": float(100.0 * np.mean(logits.argmax(-1) == labels)),
            "loss": float(losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))}


def check_fit_config(config: ml_collections.ConfigDict, num_examples: int | None = None,
                     where: str = "") -> None:
    """Refuses fit settings that cannot run: sizes, steps, intervals, the optimiser."""
    _check_fit_sizes(config, num_examples, where)
    make_optimizer(config.optimizer, config.num_steps)


def _check_fit_sizes(config: ml_collections.ConfigDict, num_examples: int | None,
                     where: str = "") -> None:
    for key in ("batch_size", "num_steps", "checkpoint_every", "log_every"):
        value = config[key]
        if not is_count(value):
            raise ValueError(f"{where}{key} must be a whole number ≥ 1, got {value!r}.")
    parallel.check_divisible(config.batch_size, f"{where}batch_size")
    if num_examples is not None and config.batch_size > num_examples:
        raise ValueError(f"{where}batch_size = {config.batch_size} exceeds the {num_examples} "
                         f"training examples; use a batch size of at most {num_examples}.")


def fit(init_fn: Callable[[jax.Array], dict[str, ModelState]], step_fn: StepFn,
        arrays: Mapping[str, np.ndarray], *, config: ml_collections.ConfigDict, workdir: str,
        context: Any = None, desc: str = "train",
        step_callback: Callable[[int, dict], None] | None = None,
        evaluate_fn: Callable[[dict[str, ModelState]], dict] | None = None,
        evaluate_every: int = 0) -> TrainState:
    """Runs (or resumes) `config.num_steps` steps of `step_fn` over batches of `arrays`.

    Args:
      init_fn: `rng -> {name: ModelState}`, the models at step 0.
      step_fn: `(models, batch, rng, context, step) -> (models, measurements)`; jitted here
        with the state donated. `rng` is folded from the run seed and the step; `step` is the
        number of steps done before this one (int32 scalar, for schedules such as an ε ramp).
      arrays: host arrays of equal leading size, batched together (see
        `data.iterate_batches`); or named streams of such arrays, each batched on its own
        (`data.iterate_streams`), e.g. {"source": {"images"}, "target": {"images"}}.
      config: has `seed`, `batch_size`, `num_steps`, `checkpoint_every` and `log_every`.
      workdir: where `checkpoints/` and `metrics.jsonl` go; a rerun resumes from it.
      context: read-only pytree passed to every step (e.g. the teacher's variables).
      desc: the stage's name on the progress bar.
      step_callback: called as `(step, measurements)` after every step (hooks and tests).
      evaluate_fn, evaluate_every: `models -> {name: number}` called every `evaluate_every`
        steps and after the last; its figures go to metrics.jsonl as {"step", "evaluation"}
        (a resumed run appends the evaluations after its checkpoint again, with equal values).

    Returns:
      The final state.

    Raises:
      ValueError: `config` cannot run on `arrays` (checked before `workdir` is created).
    """
    _check_fit_sizes(config, min((len(v) for v in jax.tree.leaves(arrays)), default=None))
    if evaluate_fn is not None and not is_count(evaluate_every):
        raise ValueError(f"evaluate_every must be a whole number ≥ 1 of steps, got "
                         f"{evaluate_every!r}.")
    os.makedirs(workdir, exist_ok=True)
    init_rng, run_rng = jax.random.split(jax.random.key(config.seed))
    state = jax.jit(lambda rng: TrainState(step=jnp.zeros((), jnp.int32), models=init_fn(rng)),
                    out_shardings=parallel.replicated())(init_rng)

    def train_step(state: TrainState, batch, context):
        new_models, measurements = step_fn(state.models, batch,
                                           jax.random.fold_in(run_rng, state.step), context,
                                           state.step)
        return TrainState(step=state.step + 1, models=new_models), measurements

    train_step = jax.jit(train_step, donate_argnums=0)
    context = parallel.replicate(context)
    with checkpoint.Checkpoints(os.path.join(workdir, "checkpoints")) as ckpts:
        start = ckpts.latest_step() or 0
        if start:
            state, _ = ckpts.restore(start, state)
        iterate = (data.iterate_streams if all(isinstance(v, Mapping) for v in arrays.values())
                   else data.iterate_batches)
        batches = iterate(arrays, config.batch_size, seed=config.seed, start_step=start,
                          num_steps=config.num_steps - start)
        progress = tqdm(range(start, config.num_steps), initial=start, total=config.num_steps,
                        desc=desc, disable=not report.is_writer(), leave=False)
        for step, batch in zip(progress, batches, strict=True):
            state, measurements = train_step(state, batch, context)
            done = step + 1
            if done % config.log_every == 0 or done == config.num_steps:
                measurements = jax.device_get(measurements)
                progress.set_postfix(loss=f"{measurements['loss']:.4g}")
                report.append_metrics(workdir, done, measurements)
            if evaluate_fn is not None and (done % evaluate_every == 0
                                            or done == config.num_steps):
                report.append_metrics(workdir, done, {"evaluation": evaluate_fn(state.models)})
            if done % config.checkpoint_every == 0 or done == config.num_steps:
                ckpts.save(done, state)
            if done % _SYNC_EVERY == 0:
                # Bounds how far the host runs ahead of the devices: with many simulated CPU
                # devices on few cores, hundreds of queued steps can starve XLA's collectives.
                jax.block_until_ready(measurements)
            if step_callback is not None:
                step_callback(done, measurements)
        ckpts.wait()
    return state


TRAIN_CONFIG_KEYS = ("dataset", "model", "num_classes", "seed", "batch_size", "num_steps",
                     "checkpoint_every", "log_every", "eval_batch_size", "optimizer")


def check_train_config(config: ml_collections.ConfigDict) -> None:
    """Refuses a supervised-training config that cannot run, before anything is written."""
    missing = [key for key in TRAIN_CONFIG_KEYS if key not in config]
    if missing:
        raise ValueError(f"This is not a `jaxinv train` config: it lacks {', '.join(missing)}. "
                         "`jaxinv train` trains one classifier (e.g. teacher.py:mnist); "
                         "pipeline configs such as zskd.py run with `jaxinv run`.")
    data.check_dataset_name(config.dataset)
    model = models.get_model(config.model, num_classes=config.num_classes)
    check_input_shape(model, data.image_shape(config.dataset, config.get("image_size")))
    check_fit_config(config)
    if config.get("train_sample") is not None and not is_count(config.train_sample):
        raise ValueError(f"train_sample must be None (all) or a whole number ≥ 1 of training "
                         f"images to draw, got {config.train_sample!r}.")
    if config.get("classes") is not None:
        classes = data.check_classes(config.classes, data.num_classes(config.dataset), "classes")
        if config.num_classes != len(classes):
            raise ValueError(f"num_classes = {config.num_classes} but classes names "
                             f"{len(classes)}; a model over a subset of classes has one output "
                             "per class it names.")
    augment.from_config(config.get("augment", {}))
    adversarial_training.from_config(config.get("adversarial"))


def training_set(dataset: str, image_size: int | None, *, limit: int | None = None,
                 sample: int | None = None, seed: int = 0, classes=None) -> data.Dataset:
    """The training split a `jaxinv train` config trains on: its first `limit` images, those
    of `classes` only (relabelled by position; None: all), of which `sample` are drawn at
    random with `seed` (None: all)."""
    train_set = data.load_dataset(dataset, "train", image_size=image_size, limit=limit)
    if classes is not None:
        train_set = data.select_classes(train_set, classes)
    return data.subsample(train_set, sample, seed) if sample else train_set


def load_classes(dataset: str, split: str, image_size: int | None, classes=None
                 ) -> data.Dataset:
    """A split of `dataset` with the examples of `classes` only, relabelled by position
    (None: all classes)."""
    loaded = data.load_dataset(dataset, split, image_size=image_size)
    return loaded if classes is None else data.select_classes(loaded, classes)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       step_callback: Callable[[int, dict], None] | None = None,
                       desc: str = "train") -> dict:
    """Trains `config.model` on `config.dataset`, evaluates on its test split, saves the model.

    Everything that can be checked is checked before the workdir is touched, so bad input
    leaves nothing behind. Writes `config.json`, `metrics.jsonl`, `checkpoints/`, the trained
    model in `model/` (variables and what it was trained on, see `jaxinv.saved_model`) and
    `results.json` (test accuracy %, wall time, images/s) into `workdir`.
    """
    check_train_config(config)
    model = models.get_model(config.model, num_classes=config.num_classes)
    train_set = training_set(config.dataset, config.get("image_size"),
                             limit=config.get("train_limit"), sample=config.get("train_sample"),
                             seed=config.seed, classes=config.get("classes"))
    test = load_classes(config.dataset, "test", config.get("image_size"), config.get("classes"))
    check_fit_config(config, len(train_set.images))
    image_shape = tuple(train_set.images.shape[1:])
    resumed = workdir_lib.open_workdir(workdir, config)
    results_path = os.path.join(workdir, "results.json")
    if resumed and os.path.exists(results_path) and saved_model.is_saved_model(workdir):
        # A finished run is final: rerunning reports it rather than re-timing an empty loop.
        return {**report.read_json(results_path), "resumed": True}
    tx = make_optimizer(config.optimizer, config.num_steps)
    start_time = time.perf_counter()
    state = fit(lambda rng: {"model": init_model_state(model, tx, rng, image_shape)},
                supervised_step(model, tx, augment.from_config(config.get("augment", {})),
                                adversarial_training.from_config(config.get("adversarial"))),
                {"images": train_set.images, "labels": train_set.labels}, config=config,
                workdir=workdir, step_callback=step_callback, desc=desc)
    train_seconds = time.perf_counter() - start_time
    variables = state.models["model"].variables
    metrics = evaluate(model, variables, test.images, test.labels, config.eval_batch_size)
    saved_model.save_model(
        os.path.join(workdir, saved_model.MODEL_DIR),
        saved_model.ModelCard(model=config.model, num_classes=config.num_classes,
                              image_shape=image_shape, dataset=config.dataset,
                              image_size=image_shape[0], classes=config.get("classes")),
        variables)
    results = {
        "model": config.model, "dataset": config.dataset, "dataset_note": test.note,
        "test_accuracy": metrics["accuracy"], "test_loss": metrics["loss"],
        "num_steps": config.num_steps, "train_seconds": train_seconds, "resumed": resumed,
        "images_per_second": config.batch_size * config.num_steps / max(train_seconds, 1e-9),
        "num_devices": jax.device_count(), "image_shape": list(image_shape),
    }
    report.write_json(results_path, results)
    return results
