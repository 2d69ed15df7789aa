"""The engine for methods whose examples are independent: chunks, jit/scan, sharding, resume.

For each chunk of examples it calls the method's `init`, runs `lax.scan` over its `step` inside
`jit` (on CPU, one jitted call per step) with the example axis of the inputs sharded over the
`data` mesh axis, checks the loss for NaN/inf, and writes the finished chunk through Orbax.
Every random draw comes from `fold_in(seed, chunk)` and then the step, so a chunk's result
depends neither on earlier interruptions nor on the number of devices.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxinv import checkpoint, parallel, report
from jaxinv.synthesis.method import SynthesisMethod, steps_as_calls
from jaxinv.teacher import Teacher
from jaxinv.validation import is_count


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """How N examples are cut into chunks of `chunk_size` (the last one padded)."""
    num_examples: int
    chunk_size: int

    @property
    def num_chunks(self) -> int:
        return -(-self.num_examples // self.chunk_size)

    def bounds(self, chunk: int) -> tuple[int, int]:
        start = chunk * self.chunk_size
        return start, min(start + self.chunk_size, self.num_examples)


def check_chunking(method: SynthesisMethod, chunk_size: int, steps_per_call: int) -> None:
    """Raises a clear error when chunks cannot be split over devices and groups."""
    if not is_count(chunk_size):
        raise ValueError(f"chunk_size must be a whole number ≥ 1, got {chunk_size!r}.")
    if chunk_size % method.group_size:
        raise ValueError(f"chunk_size {chunk_size} is not a multiple of the group size "
                         f"{method.group_size} of {method.name}.")
    parallel.check_divisible(chunk_size, "chunk_size")
    # Each device must hold whole groups: group statistics are never split across devices.
    parallel.check_divisible(chunk_size // method.group_size,
                             f"chunk_size / group_size ({chunk_size} / {method.group_size})")
    if not is_count(steps_per_call):
        raise ValueError(f"steps_per_call must be a whole number ≥ 1, got {steps_per_call!r}.")
    if method.num_steps % steps_per_call:
        raise ValueError(f"num_steps {method.num_steps} is not a multiple of steps_per_call "
                         f"{steps_per_call}; choose a divisor of {method.num_steps}.")


@functools.partial(jax.jit, static_argnums=0)
def _init_chunk(method: SynthesisMethod, inputs, init_rng):
    return method.init(init_rng, inputs)


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=3)
def _scanned_steps(method: SynthesisMethod, num_steps: int, teacher_variables, state, chunk_rng,
                   first_step):
    def scan_step(state, step):
        return method.step(state, teacher_variables, jax.random.fold_in(chunk_rng, step))

    return jax.lax.scan(scan_step, state, first_step + jnp.arange(num_steps))


@functools.partial(jax.jit, static_argnums=0, donate_argnums=2)
def _one_step(method: SynthesisMethod, teacher_variables, state, chunk_rng, step):
    return method.step(state, teacher_variables, jax.random.fold_in(chunk_rng, step))


def _run_steps(method: SynthesisMethod, num_steps: int, teacher_variables, state, chunk_rng,
               first_step: int):
    """`num_steps` steps from step `first_step`; returns the state and per-step metrics.

    One scanned call, or one jitted call per step where :func:`steps_as_calls`.
    """
    if not steps_as_calls():
        return _scanned_steps(method, num_steps, teacher_variables, state, chunk_rng,
                              first_step)
    metrics = []
    for step in range(first_step, first_step + num_steps):
        state, step_metrics = _one_step(method, teacher_variables, state, chunk_rng, step)
        # One step in flight at a time: queued steps whose cross-device reductions wait on one
        # another can starve XLA:CPU's collectives of threads when devices outnumber cores.
        metrics.append(jax.block_until_ready(step_metrics))
    return state, jax.tree.map(lambda *values: jnp.stack(values), *metrics)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _finish_chunk(method: SynthesisMethod, teacher: Teacher, teacher_variables, state):
    images = method.images(state)
    return {"images": images, "logits": teacher.logits(images, teacher_variables)}


def check_finite(losses: np.ndarray, method: str, where: str, first_step: int) -> None:
    """Raises when a loss became NaN or inf, naming the method, the place and the step."""
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise FloatingPointError(
            f"{method}: the objective became {losses[bad[0]]} in {where} at step "
            f"{first_step + bad[0]}; nothing of it was written. Lower the learning rate or "
            "check the teacher for NaNs.")


def _pad_to(x: np.ndarray, size: int) -> np.ndarray:
    """Repeats the last rows so that a short final chunk keeps the compiled shape."""
    return x if len(x) == size else np.concatenate([x, np.repeat(x[-1:], size - len(x), 0)])


def _outputs_like(method: SynthesisMethod, teacher: Teacher, inputs: dict[str, np.ndarray],
                  chunk_size: int) -> dict:
    """Zeros shaped like one chunk's `_finish_chunk` outputs, to restore saved chunks into."""
    def outputs(chunk_inputs):
        images = method.images(method.init(jax.random.key(0), chunk_inputs))
        return {"images": images, "logits": teacher.logits(images)}

    abstract = jax.eval_shape(outputs, {
        k: jax.ShapeDtypeStruct((chunk_size, *np.shape(v)[1:]), np.asarray(v).dtype)
        for k, v in inputs.items()})
    return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), abstract)


def run_chunks(method: SynthesisMethod, teacher: Teacher, inputs: dict[str, np.ndarray], *,
               seed: int, chunk_size: int, steps_per_call: int,
               workdir: str) -> dict[str, np.ndarray]:
    """Runs `method` over all examples in resumable chunks written to `workdir/chunks`.

    Returns:
      {"images" (N, H, W, C), "logits" (N, K), "chunk" (N,) int32}, bit-identical whether or
      not the run was interrupted.
    """
    num_examples = len(next(iter(inputs.values())))
    plan = ChunkPlan(num_examples, chunk_size)
    teacher_variables = parallel.replicate(teacher.variables)
    seed_rng = jax.random.key(seed)
    with checkpoint.Checkpoints(os.path.join(workdir, "chunks"), max_to_keep=None) as ckpts:
        done = set(ckpts.all_steps())
        todo = [c for c in range(plan.num_chunks) if c not in done]
        progress = tqdm(total=len(todo) * method.num_steps, desc=f"synthesis ({method.name})",
                        disable=not report.is_writer() or not todo, leave=False)
        for chunk in todo:
            start, stop = plan.bounds(chunk)
            chunk_inputs = parallel.shard_batch(
                {k: _pad_to(np.asarray(v[start:stop]), chunk_size) for k, v in inputs.items()})
            init_rng, chunk_rng = jax.random.split(jax.random.fold_in(seed_rng, chunk))
            state = _init_chunk(method, chunk_inputs, init_rng)
            for first_step in range(0, method.num_steps, steps_per_call):
                state, metrics = _run_steps(method, steps_per_call, teacher_variables, state,
                                            chunk_rng, first_step)
                losses = np.asarray(metrics["loss"])
                check_finite(losses, method.name, f"chunk {chunk}", first_step)
                progress.update(steps_per_call)
                progress.set_postfix(chunk=f"{chunk + 1}/{plan.num_chunks}",
                                     loss=f"{losses[-1]:.4g}")
            outputs = _finish_chunk(method, teacher, teacher_variables, state)
            ckpts.save(chunk, outputs, meta={"chunk": chunk, "final_loss": float(losses[-1])})
        progress.close()
        ckpts.wait()
        # Every chunk is read back from disk, so that the host holds one chunk at a time while
        # synthesising, whatever the number of examples.
        like = _outputs_like(method, teacher, inputs, chunk_size)
        parts = {"images": [], "logits": [], "chunk": []}
        for chunk in range(plan.num_chunks):
            arrays = ckpts.restore(chunk, like)[0]
            start, stop = plan.bounds(chunk)
            parts["images"].append(np.asarray(arrays["images"])[:stop - start])
            parts["logits"].append(np.asarray(arrays["logits"])[:stop - start])
            parts["chunk"].append(np.full(stop - start, chunk, np.int32))
    return {k: np.concatenate(v) for k, v in parts.items()}
