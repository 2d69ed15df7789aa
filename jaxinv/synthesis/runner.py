"""The synthesis engine shared by every method: chunks, jit/vmap/scan, sharding, resume.

A method is a pure description (:class:`SynthesisMethod`); this module owns the loop. For each
chunk of examples it initialises the parameterisation, runs `lax.scan` over optimisation steps
inside `jit` with the example axis sharded over the `data` mesh axis, checks the loss for
NaN/inf, and writes the finished chunk through Orbax. Every random draw comes from
`fold_in(seed, chunk)` and then the step and group index, so a chunk's result depends neither
on earlier interruptions nor on the number of devices.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec
from tqdm import tqdm

from jaxinv import checkpoint, parallel, report
from jaxinv import workdir as workdir_lib
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.teacher import Teacher

TRANSFER_SET_FILE = "transfer_set.npz"
# Examples per vmapped gradient micro-batch on CPU: LeNet-5 activations of 64 images stay in
# cache, so throughput stays flat from chunks of 32 to 2,400 (BENCHMARKS.md, synthesis scaling)
# where one vmapped chunk of thousands spilled the caches and ran at about half the speed.
CPU_MICRO_BATCH = 64


def default_micro_batch(chunk_size: int) -> int:
    """64 on CPU; on accelerators the whole chunk, whose parallelism they can use."""
    return CPU_MICRO_BATCH if jax.default_backend() == "cpu" else chunk_size


def clip_to_unit_box(params: jax.Array) -> jax.Array:
    """Projection onto valid images, values in [0, 1]."""
    return jnp.clip(params, 0.0, 1.0)


# eq=False: hashed by identity, so an instance can be a static jit argument.
@dataclasses.dataclass(frozen=True, eq=False)
class SynthesisMethod:
    """A synthesis method as pure functions; :func:`synthesize` runs it.

    Attributes:
      name: e.g. "data_impressions".
      init_fn: `(rng, targets (n, K)) -> params`, a pytree whose leaves have leading axis n.
      loss_fn: `(teacher_variables, params_group, targets_group, rng) -> scalar` for one group
        of `group_size` examples (leading axis g); the runner vmaps it over groups and sums.
      optimizer: the optax transformation applied to params.
      num_steps: optimisation steps per chunk.
      render_fn: `params -> images (n, H, W, C)` in [0, 1]; identity for pixel methods.
      project_fn: applied to params after every update (e.g. clip to [0, 1]); None for none.
      group_size: examples that share one objective (BN statistics, contrastive pairs). Their
        statistics are taken over the group whatever the device count.
      config: the method's settings, recorded with the TransferSet and checked on resume.
    """
    name: str
    init_fn: Callable[[jax.Array, jax.Array], Any]
    loss_fn: Callable[[dict, Any, jax.Array, jax.Array], jax.Array]
    optimizer: optax.GradientTransformation
    num_steps: int
    render_fn: Callable[[Any], jax.Array] = lambda params: params
    project_fn: Callable[[Any], Any] | None = clip_to_unit_box
    group_size: int = 1
    config: dict = dataclasses.field(default_factory=dict)


def _grouped(tree: Any, group_size: int) -> Any:
    return jax.tree.map(lambda x: x.reshape(x.shape[0] // group_size, group_size, *x.shape[1:]),
                        tree)


def _agreement(logits: jax.Array, targets: jax.Array) -> jax.Array:
    return jnp.mean(logits.argmax(-1) == targets.argmax(-1))


def _local_losses_and_grads(method: SynthesisMethod, micro_batch: int, teacher_variables,
                            grouped_params, grouped_targets, group_rngs):
    """Per-group losses and parameter gradients of the groups held by one device.

    The groups are processed `micro_batch` examples at a time (vmapped within a micro-batch,
    looped across them). Groups never interact, so this changes only the memory footprint: on
    CPU a large vmapped batch spills the caches and runs slower per example.
    """
    value_and_grad = jax.value_and_grad(method.loss_fn, argnums=1)

    def one_group(args):
        params, targets, rng = args
        return value_and_grad(teacher_variables, params, targets, rng)

    return jax.lax.map(one_group, (grouped_params, grouped_targets, group_rngs),
                       batch_size=max(1, micro_batch // method.group_size))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3), donate_argnums=(5, 6))
def _run_steps(method: SynthesisMethod, teacher: Teacher, num_steps: int, micro_batch: int,
               teacher_variables, params, opt_state, targets, chunk_rng, first_step):
    """`num_steps` optimisation steps from step `first_step`; returns per-step mean losses."""
    num_groups = targets.shape[0] // method.group_size
    grouped_targets = _grouped(targets, method.group_size)
    data = PartitionSpec(parallel.DATA_AXIS)
    # shard_map keeps each device's micro-batch loop on its own groups.
    losses_and_grads = jax.shard_map(
        functools.partial(_local_losses_and_grads, method, micro_batch),
        mesh=parallel.data_mesh(), in_specs=(PartitionSpec(), data, data, data),
        out_specs=(data, data))

    def step_fn(carry, step):
        params, opt_state = carry
        group_rngs = jax.random.split(jax.random.fold_in(chunk_rng, step), num_groups)
        group_losses, grouped_grads = losses_and_grads(
            teacher_variables, _grouped(params, method.group_size), grouped_targets, group_rngs)
        # The objective is the sum over groups, so each example's gradient is its own group's,
        # independent of the chunk size.
        grads = jax.tree.map(lambda g, p: g.reshape(p.shape), grouped_grads, params)
        updates, opt_state = method.optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if method.project_fn is not None:
            params = method.project_fn(params)
        return (params, opt_state), group_losses.sum() / targets.shape[0]

    (params, opt_state), losses = jax.lax.scan(step_fn, (params, opt_state),
                                               first_step + jnp.arange(num_steps))
    logits = teacher.logits(method.render_fn(params), teacher_variables)
    return params, opt_state, losses, _agreement(logits, targets)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_chunk(method: SynthesisMethod, teacher: Teacher, teacher_variables, targets, init_rng):
    params = method.init_fn(init_rng, targets)
    logits = teacher.logits(method.render_fn(params), teacher_variables)
    return params, method.optimizer.init(params), _agreement(logits, targets)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _finish_chunk(method: SynthesisMethod, teacher: Teacher, teacher_variables, params):
    images = method.render_fn(params)
    return images, teacher.logits(images, teacher_variables)


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """How N examples are cut into chunks; `chunk_size` divides over devices and groups."""
    num_examples: int
    chunk_size: int

    @property
    def num_chunks(self) -> int:
        return -(-self.num_examples // self.chunk_size)

    def bounds(self, chunk: int) -> tuple[int, int]:
        start = chunk * self.chunk_size
        return start, min(start + self.chunk_size, self.num_examples)


def _validate(method: SynthesisMethod, targets: jax.Array, chunk_size: int,
              steps_per_call: int, micro_batch: int) -> None:
    if method.num_steps < 1:
        raise ValueError(f"{method.name}: num_steps must be ≥ 1, got {method.num_steps}.")
    if targets.ndim != 2 or len(targets) == 0:
        raise ValueError(f"targets must be (N, K) with N ≥ 1; got shape {targets.shape}.")
    if chunk_size % method.group_size:
        raise ValueError(f"chunk_size {chunk_size} is not a multiple of the group size "
                         f"{method.group_size} of {method.name}.")
    parallel.check_divisible(chunk_size, "chunk_size")
    # Each device must hold whole groups: group statistics are never split across devices.
    parallel.check_divisible(chunk_size // method.group_size,
                             f"chunk_size / group_size ({chunk_size} / {method.group_size})")
    if micro_batch < 1:
        raise ValueError(f"micro_batch must be ≥ 1, got {micro_batch}.")
    if method.num_steps % steps_per_call:
        raise ValueError(f"num_steps {method.num_steps} is not a multiple of steps_per_call "
                         f"{steps_per_call}.")


def _pad_to(x: np.ndarray, size: int) -> np.ndarray:
    """Repeats the last rows so that a short final chunk keeps the compiled shape."""
    return x if len(x) == size else np.concatenate([x, np.repeat(x[-1:], size - len(x), 0)])


def synthesize(method: SynthesisMethod, teacher: Teacher, targets: np.ndarray, *,
               classes: np.ndarray, betas: np.ndarray, seed: int, chunk_size: int,
               workdir: str, steps_per_call: int | None = None,
               micro_batch: int | None = None) -> TransferSet:
    """Synthesises one example per target row, in resumable chunks written to `workdir`.

    Args:
      method: what to optimise (see :class:`SynthesisMethod`).
      teacher: the frozen classifier.
      targets: (N, K) the output each example is optimised towards.
      classes: (N,) int class of each target; betas: (N,) float Dirichlet scale (0 = one-hot).
      seed: the run seed; every draw derives from it.
      chunk_size: examples per jit call; a multiple of the device count and the group size.
      workdir: where chunks (Orbax, `chunks/`) and the final `transfer_set.npz` go. Rerunning
        with the same arguments resumes at the first unfinished chunk.
      steps_per_call: steps per compiled call (the progress bar updates in between); defaults
        to all steps of a chunk.
      micro_batch: examples whose gradients are computed together on one device within a step
        (rounded to whole groups); defaults to :func:`default_micro_batch`. A speed and memory
        knob only: results change by float rounding.

    Returns:
      The TransferSet, bit-identical whether or not the run was interrupted.

    Raises:
      FloatingPointError: the objective became NaN or inf; names method, chunk and step.
      ValueError: bad sizes, or `workdir` holds chunks of a different synthesis config.
    """
    targets = np.asarray(targets, np.float32)
    steps_per_call = steps_per_call or method.num_steps
    if micro_batch is None:
        micro_batch = default_micro_batch(chunk_size)
    _validate(method, targets, chunk_size, steps_per_call, micro_batch)
    plan = ChunkPlan(len(targets), chunk_size)
    run_record = {"method": method.name, "method_config": method.config, "seed": seed,
                  "chunk_size": chunk_size, "num_examples": plan.num_examples,
                  "targets_sha": _fingerprint(targets)}
    os.makedirs(workdir, exist_ok=True)
    _check_run_record(os.path.join(workdir, "synthesis.json"), run_record)
    final_path = os.path.join(workdir, TRANSFER_SET_FILE)
    if os.path.exists(final_path):
        return TransferSet.load(final_path)

    teacher_variables = parallel.replicate(teacher.variables)
    seed_rng = jax.random.key(seed)
    chunk_like = None
    # Chunks finished by this process stay in host memory, so only resumed ones are read back.
    finished: dict[int, dict[str, np.ndarray]] = {}
    with checkpoint.Checkpoints(os.path.join(workdir, "chunks"), max_to_keep=None) as ckpts:
        done = set(ckpts.all_steps())
        todo = [c for c in range(plan.num_chunks) if c not in done]
        progress = tqdm(total=len(todo) * method.num_steps, desc=method.name, unit="step",
                        disable=not report.is_writer(), leave=False)
        for chunk in todo:
            start, stop = plan.bounds(chunk)
            chunk_targets = parallel.shard_batch(_pad_to(targets[start:stop], chunk_size))
            init_rng, chunk_rng = jax.random.split(jax.random.fold_in(seed_rng, chunk))
            params, opt_state, _ = _init_chunk(method, teacher, teacher_variables,
                                               chunk_targets, init_rng)
            for first_step in range(0, method.num_steps, steps_per_call):
                params, opt_state, losses, agreement = _run_steps(
                    method, teacher, steps_per_call, micro_batch, teacher_variables, params,
                    opt_state, chunk_targets, chunk_rng, first_step)
                losses = np.asarray(losses)
                _check_finite(losses, method.name, chunk, first_step)
                progress.update(steps_per_call)
                progress.set_postfix(chunk=f"{chunk + 1}/{plan.num_chunks}",
                                     loss=f"{losses[-1]:.4f}", agree=f"{float(agreement):.2f}")
            images, logits = _finish_chunk(method, teacher, teacher_variables, params)
            chunk_like = {"images": images, "logits": logits}
            ckpts.save(chunk, chunk_like, meta={"chunk": chunk, "final_loss": float(losses[-1]),
                                                "agreement": float(agreement)})
            finished[chunk] = {key: np.asarray(value) for key, value in chunk_like.items()}
        progress.close()
        ckpts.wait()
        transfer_set = _assemble(ckpts, plan, method, teacher, targets, classes, betas, seed,
                                 chunk_like, finished)
    transfer_set.save(final_path)
    return transfer_set


def _assemble(ckpts: checkpoint.Checkpoints, plan: ChunkPlan, method: SynthesisMethod,
              teacher: Teacher, targets: np.ndarray, classes: np.ndarray, betas: np.ndarray,
              seed: int, chunk_like: dict | None,
              finished: dict[int, dict[str, np.ndarray]]) -> TransferSet:
    if chunk_like is None:  # every chunk was already on disk: build the restore template
        like_params = jax.eval_shape(method.init_fn, jax.random.key(0),
                                     jnp.zeros((plan.chunk_size, targets.shape[1])))
        images_like = jax.eval_shape(method.render_fn, like_params)
        chunk_like = {"images": jnp.zeros(images_like.shape, images_like.dtype),
                      "logits": jnp.zeros((plan.chunk_size, targets.shape[1]), jnp.float32)}
    images, logits, chunk_ids = [], [], []
    for chunk in range(plan.num_chunks):
        arrays = finished[chunk] if chunk in finished else ckpts.restore(chunk, chunk_like)[0]
        start, stop = plan.bounds(chunk)
        images.append(np.asarray(arrays["images"])[:stop - start])
        logits.append(np.asarray(arrays["logits"])[:stop - start])
        chunk_ids.append(np.full(stop - start, chunk, np.int32))
    return TransferSet(images=np.concatenate(images), logits=np.concatenate(logits),
                       targets=targets, classes=np.asarray(classes, np.int32),
                       betas=np.asarray(betas, np.float32), chunks=np.concatenate(chunk_ids),
                       method=method.name, seed=seed, config=method.config)


def _fingerprint(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def _check_run_record(path: str, record: dict) -> None:
    record = report.to_jsonable(record)
    if os.path.exists(path):
        diffs = workdir_lib.config_differences(report.read_json(path), record)
        if diffs:
            raise ValueError(f"{os.path.dirname(path)} holds chunks of a different synthesis "
                             "run, so it cannot be resumed:\n  " + "\n  ".join(diffs)
                             + "\nUse a fresh workdir, or rerun with the original settings.")
    else:
        report.write_json(path, record)


def _check_finite(losses: np.ndarray, method: str, chunk: int, first_step: int) -> None:
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise FloatingPointError(
            f"{method}: the objective became {losses[bad[0]]} in chunk {chunk} at step "
            f"{first_step + bad[0]}; nothing of this chunk was written. Lower the learning rate "
            "or check the teacher for NaNs.")
