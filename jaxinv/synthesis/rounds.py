"""The driver for methods whose state carries from round to round: bank, head, student, pool.

One state holds everything a method keeps between rounds (a memory bank of past samples, a
projection head, a student distilled between rounds, a generator that is re-initialised each round).
Each round is one `step` in one jitted, donated call (on CPU, a method with phases runs each phase
step as its own jitted, donated call: see `method.py`); the whole state is checkpointed through
Orbax every `checkpoint_every` rounds and after the last, and every draw comes from `fold_in(seed,
round)`. So a run killed at any moment and rerun in the same workdir restarts from its last
checkpoint and ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from tqdm import tqdm

from jaxinv import checkpoint, parallel, report
from jaxinv.synthesis.engine import check_finite
from jaxinv.synthesis.method import SynthesisMethod, phase_keys, steps_as_calls
from jaxinv.teacher import Teacher
from jaxinv.validation import is_count


@functools.partial(jax.jit, static_argnums=0)
def _init(method: SynthesisMethod, inputs, init_rng):
    return method.init(init_rng, inputs)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=2)
def _round(method: SynthesisMethod, teacher_variables, state, rng):
    return method.step(state, teacher_variables, rng)


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=3)
def _phase_step(method: SynthesisMethod, index: int, teacher_variables, state, rng):
    return method.phases[index].step(state, teacher_variables, rng)


def _run_round(method: SynthesisMethod, teacher_variables, state, rng):
    """One round: one jitted call, or on CPU the phases' steps one jitted call each."""
    if not method.phases or not steps_as_calls():
        return _round(method, teacher_variables, state, rng)
    metrics = {}
    for index, phase in enumerate(method.phases):
        for key in phase_keys(rng, index, phase):
            state, phase_metrics = _phase_step(method, index, teacher_variables, state, key)
        metrics.update(phase_metrics)
    return state, metrics


@functools.partial(jax.jit, static_argnums=0)
def _images(method: SynthesisMethod, state):
    return method.images(state)


def run_rounds(method: SynthesisMethod, teacher: Teacher, inputs: dict[str, np.ndarray], *,
               seed: int, checkpoint_every: int, workdir: str,
               eval_batch_size: int = 1000) -> dict[str, np.ndarray]:
    """Runs `method.num_steps` rounds of `method` over one state; resumes from `workdir/state`.

    Returns:
      {"images" (N, H, W, C) from `method.images` of the final state, "logits" (N, K), and
      "models" ({name: (model name, variables)} from `method.models`, or {})}.
    """
    if not is_count(checkpoint_every):
        raise ValueError(f"checkpoint_every must be a whole number ≥ 1, got {checkpoint_every!r}.")
    teacher_variables = parallel.replicate(teacher.variables)
    init_rng, run_rng = jax.random.split(jax.random.key(seed))
    state = _init(method, parallel.replicate({k: np.asarray(v) for k, v in inputs.items()}),
                  init_rng)
    with checkpoint.Checkpoints(os.path.join(workdir, "state"), max_to_keep=1) as ckpts:
        start = ckpts.latest_step() or 0
        if start:
            state, _ = ckpts.restore(start, state)
        progress = tqdm(range(start, method.num_steps), initial=start, total=method.num_steps,
                        desc=f"synthesis ({method.name}), rounds", leave=False,
                        disable=not report.is_writer())
        for index in progress:
            state, metrics = _run_round(method, teacher_variables, state,
                                        jax.random.fold_in(run_rng, index))
            loss = np.asarray(metrics["loss"]).reshape(-1)
            check_finite(loss, method.name, "the rounds", index)
            progress.set_postfix(loss=f"{float(loss[-1]):.4g}")
            done = index + 1
            if done % checkpoint_every == 0 or done == method.num_steps:
                ckpts.save(done, state, meta={"round": done})
        ckpts.wait()
    images = np.asarray(_images(method, state))
    logits_fn = jax.jit(teacher.logits)
    logits = np.concatenate([np.asarray(logits_fn(images[i:i + eval_batch_size],
                                                  teacher.variables))
                             for i in range(0, len(images), eval_batch_size)])
    trained = {} if method.models is None else jax.device_get(method.models(state))
    return {"images": images, "logits": logits, "models": trained}
