"""Supervised training and evaluation of a classifier: optax, jit, data-parallel, resumable.

`train_and_evaluate(config, workdir)` is the library entry point behind `jaxinv train`. Batches
are a pure function of (seed, step) and every random draw folds in the step, so a run that is
killed and rerun in the same workdir ends with exactly the parameters of an uninterrupted one.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm import tqdm

from jaxinv import augment, checkpoint, data, losses, models, parallel, report
from jaxinv import workdir as workdir_lib

_SYNC_EVERY = 20


@flax.struct.dataclass
class TrainState:
    """Everything a training step reads and writes; a pytree, replicated over the mesh."""
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    @property
    def variables(self) -> dict:
        """The model variables for `model.apply`."""
        return {"params": self.params, "batch_stats": self.batch_stats}


def make_optimizer(config: ml_collections.ConfigDict,
                   num_steps: int) -> optax.GradientTransformation:
    """Adam or SGD with a constant or cosine learning rate, from `config.optimizer`.

    Args:
      config: has `name` ("adam" | "sgd"), `learning_rate` > 0, `schedule`
        ("constant" | "cosine"), and for SGD `momentum`; optional `weight_decay` ≥ 0.
      num_steps: total steps, the length of the cosine schedule.
    """
    if config.learning_rate <= 0:
        raise ValueError(f"optimizer.learning_rate must be > 0, got {config.learning_rate}.")
    if config.schedule == "cosine":
        lr = optax.cosine_decay_schedule(config.learning_rate, max(num_steps, 1))
    elif config.schedule == "linear":
        lr = optax.linear_schedule(config.learning_rate, 0.0, max(num_steps, 1))
    elif config.schedule == "constant":
        lr = config.learning_rate
    else:
        raise ValueError(f"Unknown optimizer.schedule {config.schedule!r}; "
                         "use 'constant', 'linear' or 'cosine'.")
    weight_decay = config.get("weight_decay", 0.0)
    if config.name == "adam":
        return optax.adamw(lr, weight_decay=weight_decay) if weight_decay else optax.adam(lr)
    if config.name == "sgd":
        return optax.chain(optax.add_decayed_weights(weight_decay),
                           optax.sgd(lr, momentum=config.get("momentum", 0.9), nesterov=True))
    raise ValueError(f"Unknown optimizer.name {config.name!r}; use 'adam' or 'sgd'.")


def init_variables(model: nn.Module, rng: jax.Array, image_shape: tuple[int, ...]) -> dict:
    """Model variables for images of shape (H, W, C); `batch_stats` is {} for BN-free models."""
    variables = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def check_input_shape(model: nn.Module, image_shape: tuple[int, ...]) -> None:
    """Raises a clear error when `model` cannot take images of shape (H, W, C)."""
    if len(image_shape) != 3:
        raise ValueError(f"Images must be (H, W, C); got per-example shape {image_shape}.")
    try:
        jax.eval_shape(lambda: init_variables(model, jax.random.key(0), image_shape))
    except Exception as err:  # flax raises assorted shape errors deep inside the model
        raise ValueError(
            f"Model {type(model).__name__} cannot take images of shape {image_shape}: {err}. "
            "Check the dataset's image_size against the model (LeNet-5 expects 32x32x1).") from err


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
                       image_shape: tuple[int, ...]) -> TrainState:
    """Initial state, built by a jit whose outputs are replicated over the `data` mesh."""
    def init_fn(rng):
        variables = init_variables(model, rng, image_shape)
        return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                          batch_stats=variables["batch_stats"],
                          opt_state=tx.init(variables["params"]))

    return jax.jit(init_fn, out_shardings=parallel.replicated())(rng)


def apply_model(model: nn.Module, variables: dict, images: jax.Array, *, train: bool,
                rng: jax.Array | None = None) -> tuple[jax.Array, Any]:
    """Logits and updated batch statistics (unchanged when `train` is False or there are none)."""
    rngs = {"dropout": rng} if rng is not None else {}
    if train and variables["batch_stats"]:
        logits, updates = model.apply(variables, images, train=True, rngs=rngs,
                                      mutable=["batch_stats"])
        return logits, updates["batch_stats"]
    return model.apply(variables, images, train=train, rngs=rngs), variables["batch_stats"]


def make_train_step(model: nn.Module, tx: optax.GradientTransformation,
                    loss_fn: Callable[[jax.Array, Any], jax.Array],
                    batch_fn: Callable | None = None) -> Callable:
    """A jitted `(state, images, targets, rng, batch_args) -> (state, measurements)`.

    The state is donated, so its buffers are updated in place.

    Args:
      loss_fn: `(logits, targets) -> scalar`; targets are labels or teacher logits.
      batch_fn: optional `(images, targets, rng, batch_args) -> (images, targets)` run inside
        the step, e.g. augmentation followed by the teacher's logits on the augmented images;
        `batch_args` (e.g. the teacher's variables) is passed through as a jit argument.
    """
    def train_step(state: TrainState, images, targets, rng, batch_args):
        step_rng, batch_rng = jax.random.split(jax.random.fold_in(rng, state.step))
        if batch_fn is not None:
            images, targets = batch_fn(images, targets, batch_rng, batch_args)

        def objective(params):
            variables = {"params": params, "batch_stats": state.batch_stats}
            logits, batch_stats = apply_model(model, variables, images, train=True, rng=step_rng)
            return loss_fn(logits, targets), (logits, batch_stats)

        (loss, (logits, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = TrainState(step=state.step + 1,
                               params=optax.apply_updates(state.params, updates),
                               batch_stats=batch_stats, opt_state=opt_state)
        return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    return jax.jit(train_step, donate_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def _predict(model: nn.Module, variables: dict, images: jax.Array) -> jax.Array:
    return model.apply(variables, images, train=False)


def predict_logits(model: nn.Module, variables: dict, images: np.ndarray,
                   batch_size: int = 1000) -> np.ndarray:
    """Logits (N, K) for host images (N, H, W, C) in [0, 1], in sharded batches.

    The last batch is padded up to `batch_size` so that only one shape is ever compiled.
    """
    parallel.check_divisible(batch_size, "eval batch_size")
    variables = parallel.replicate(variables)
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start:start + batch_size], np.float32)
        num_real = len(batch)
        if num_real < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - num_real, *batch.shape[1:]),
                                                    np.float32)])
        logits = _predict(model, variables, parallel.shard_batch(batch))
        outputs.append(np.asarray(logits)[:num_real])
    return np.concatenate(outputs)


def evaluate(model: nn.Module, variables: dict, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 1000) -> dict[str, float]:
    """Accuracy (%) and mean cross-entropy on host arrays (N, H, W, C) and labels (N,)."""
    logits = predict_logits(model, variables, images, batch_size)
    return {"accuracy": float(100.0 * np.mean(logits.argmax(-1) == labels)),
            "loss": float(losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))}


def load_train_test(config: ml_collections.ConfigDict) -> tuple[data.Dataset, data.Dataset]:
    """The train and test splits named by `config.dataset` at `config.image_size`."""
    kwargs = dict(image_size=config.get("image_size"), limit=config.get("train_limit"))
    train = data.load_dataset(config.dataset, "train", **kwargs)
    test = data.load_dataset(config.dataset, "test", image_size=config.get("image_size"))
    return train, test


def fit(model: nn.Module, train_images: np.ndarray, targets: np.ndarray, *,
        loss_fn: Callable, config: ml_collections.ConfigDict, workdir: str,
        batch_fn: Callable | None = None, batch_args: Any = None,
        step_callback: Callable[[int, dict], None] | None = None) -> TrainState:
    """Runs (or resumes) `config.num_steps` steps of `loss_fn` on host arrays; checkpoints.

    Args:
      train_images: (N, H, W, C) float32 in [0, 1].
      targets: (N, ...) labels or teacher logits, batched alongside the images.
      config: has `seed`, `batch_size`, `num_steps`, `checkpoint_every`, `log_every` and an
        `optimizer` block (see :func:`make_optimizer`).
      batch_fn, batch_args: see :func:`make_train_step`.
      step_callback: called as `(step, measurements)` after every step (for hooks and tests).

    Returns:
      The final state. Measurements go to `workdir/metrics.jsonl`.
    """
    parallel.check_divisible(config.batch_size, "batch_size")
    tx = make_optimizer(config.optimizer, config.num_steps)
    rng = jax.random.key(config.seed)
    init_rng, step_rng = jax.random.split(rng)
    state = create_train_state(model, tx, init_rng, train_images.shape[1:])
    train_step = make_train_step(model, tx, loss_fn, batch_fn)
    batch_args = parallel.replicate(batch_args)
    with checkpoint.Checkpoints(os.path.join(workdir, "checkpoints")) as ckpts:
        start = ckpts.latest_step() or 0
        if start:
            state, _ = ckpts.restore(start, state)
        batches = data.iterate_batches(train_images, targets, config.batch_size, seed=config.seed,
                                       start_step=start, num_steps=config.num_steps - start)
        progress = tqdm(range(start, config.num_steps), initial=start, total=config.num_steps,
                        desc="train", disable=not report.is_writer(), leave=False)
        for step, (images, batch_targets) in zip(progress, batches, strict=True):
            state, measurements = train_step(state, images, batch_targets, step_rng,
                                             batch_args)
            done = step + 1
            if done % config.log_every == 0 or done == config.num_steps:
                measurements = jax.device_get(measurements)
                progress.set_postfix(loss=f"{measurements['loss']:.4f}")
                report.append_metrics(workdir, done, measurements)
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


def augmented_batch_fn(augment_config: augment.AugmentConfig) -> Callable:
    """A `batch_fn` that warps each image on the fly and keeps its label."""
    def batch_fn(images, labels, rng, batch_args):
        del batch_args
        return augment.augment_batch(rng, images, augment_config), labels

    return batch_fn


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       step_callback: Callable[[int, dict], None] | None = None) -> dict:
    """Trains `config.model` on `config.dataset`, evaluates on its test split, writes results.

    Everything that can be checked is checked before the workdir is touched, so bad input
    leaves nothing behind. Writes `config.json`, `metrics.jsonl`, `checkpoints/` and
    `results.json` (test accuracy %, wall time, images/s) into `workdir`.
    """
    model = models.get_model(config.model, num_classes=config.num_classes)
    train, test = load_train_test(config)
    check_input_shape(model, train.images.shape[1:])
    augment_config = augment.from_config(config.get("augment", {}))
    if augment_config.mixup:
        raise ValueError("augment.mixup mixes two images into one that no label describes; it "
                         "is for distillation, where the teacher labels every mixed image. "
                         "Set augment.mixup=0 to train on labels.")
    resumed = workdir_lib.open_workdir(workdir, config)
    results_path = os.path.join(workdir, "results.json")
    if resumed and os.path.exists(results_path):
        # A finished run is final: rerunning reports it rather than re-timing an empty loop.
        return {**report.read_json(results_path), "resumed": True}
    start_time = time.perf_counter()
    state = fit(model, train.images, train.labels, loss_fn=losses.cross_entropy, config=config,
                workdir=workdir, step_callback=step_callback,
                batch_fn=None if augment_config.is_identity else augmented_batch_fn(augment_config))
    train_seconds = time.perf_counter() - start_time
    metrics = evaluate(model, state.variables, test.images, test.labels, config.eval_batch_size)
    results = {
        "model": config.model, "dataset": config.dataset, "dataset_note": test.note,
        "test_accuracy": metrics["accuracy"], "test_loss": metrics["loss"],
        "num_steps": config.num_steps, "train_seconds": train_seconds, "resumed": resumed,
        "images_per_second": config.batch_size * config.num_steps / max(train_seconds, 1e-9),
        "num_devices": jax.device_count(), "image_shape": list(train.images.shape[1:]),
    }
    report.write_json(results_path, results)
    return results


def load_trained(workdir: str) -> tuple[nn.Module, dict, tuple[int, ...]]:
    """The model, variables and image shape (H, W, C) of a finished `train` run, for reuse by path.

    Raises:
      FileNotFoundError: `workdir` holds no config.json or no checkpoint.
    """
    config_path = os.path.join(workdir, workdir_lib.CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FileNotFoundError(
            f"No {workdir_lib.CONFIG_FILE} in {workdir}: it is not a jaxinv run folder. Train a "
            "teacher first with `jaxinv train <config> --workdir DIR` and pass that DIR.")
    results_path = os.path.join(workdir, "results.json")
    if not os.path.exists(results_path):
        raise FileNotFoundError(f"{workdir} holds an unfinished run (no results.json); rerun its "
                                "training command with the same --workdir to finish it.")
    config = ml_collections.ConfigDict(report.read_json(config_path))
    image_shape = tuple(report.read_json(results_path)["image_shape"])
    model = models.get_model(config.model, num_classes=config.num_classes)
    with checkpoint.Checkpoints(os.path.join(workdir, "checkpoints")) as ckpts:
        step = ckpts.latest_step()
        if step is None:
            raise FileNotFoundError(f"{workdir}/checkpoints holds no finished checkpoint; "
                                    "rerun the training command to finish it.")
        tx = make_optimizer(config.optimizer, config.num_steps)
        # Only shapes and shardings are needed: eval_shape skips compiling the initialiser.
        like = jax.eval_shape(
            lambda: create_train_state(model, tx, jax.random.key(0), image_shape))
        state, _ = ckpts.restore(step, like)
    return model, state.variables, image_shape
