"""The synthesis contract: a method is a pure description, in optax's style, not a loop.

A :class:`SynthesisMethod` holds three pure functions over an explicit state:

  init(rng, inputs) -> state
  step(state, teacher_variables, rng) -> (state, metrics)
  images(state) -> (n, H, W, C) in [0, 1]

A stateful method may also declare its round as phases (:class:`Phase`: fit a generator for 200
steps, pool its batch, distil a student for 400 steps): :meth:`SynthesisMethod.from_phases` derives
`step` as their scans, and `rounds.py` runs them on CPU as host loops of jitted steps instead,
because XLA:CPU computes convolution weight gradients inside a loop many times slower than in
a jitted call of their own (jax-ml/jax#12868).

`inputs` is a dict of per-example arrays with leading axis n (targets, classes, background
images, ...) and `state` is any pytree: pixels with their optimiser state, or a generator's
weights and latent codes, a memory bank, a student. The engines run it: `engine.py` cuts
independent examples into sharded, resumable chunks; `rounds.py` carries one state across rounds
and checkpoints all of it. :func:`grouped_pixel_step` builds `init` and `step` for the common
case of per-example parameters optimised by gradient descent on a per-group loss;
:func:`group_gradients` is its gradient half, for methods with their own update rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec

from jaxinv import parallel
from jaxinv.validation import is_count

# Examples per vmapped gradient micro-batch on CPU: LeNet-5 activations of 64 images stay in
# cache, so throughput stays flat from chunks of 32 to 2,400 (BENCHMARKS.md, synthesis scaling)
# where one vmapped chunk of thousands spilled the caches and ran at about half the speed.
CPU_MICRO_BATCH = 64


@dataclasses.dataclass(frozen=True, eq=False)
class Phase:
    """One stage of a round: `step(state, teacher_variables, rng) -> (state, metrics)` taken
    `num_steps` times in a row; its metrics are the last step's."""
    name: str
    step: Callable[[Any, Any, jax.Array], tuple[Any, dict]]
    num_steps: int = 1


def phase_keys(rng: jax.Array, index: int, phase: Phase) -> jax.Array:
    """The keys of the steps of a round's `index`-th phase, (phase.num_steps,)."""
    return jax.random.split(jax.random.fold_in(rng, index), phase.num_steps)


def round_of_phases(phases: tuple[Phase, ...]) -> Callable:
    """The `step` that runs `phases` in order, each as one scan; its metrics are every phase's
    last."""
    def step(state: Any, teacher_variables: Any, rng: jax.Array) -> tuple[Any, dict]:
        metrics = {}
        for index, phase in enumerate(phases):
            keys = phase_keys(rng, index, phase)
            if phase.num_steps == 1:
                state, phase_metrics = phase.step(state, teacher_variables, keys[0])
            else:
                state, stacked = jax.lax.scan(
                    lambda carry, key, phase=phase: phase.step(carry, teacher_variables, key),
                    state, keys)
                phase_metrics = jax.tree.map(lambda values: values[-1], stacked)
            metrics.update(phase_metrics)
        return state, metrics

    return step


# eq=False: hashed by identity, so an instance can be a static jit argument.
@dataclasses.dataclass(frozen=True, eq=False)
class SynthesisMethod:
    """A synthesis method as pure functions; :func:`jaxinv.synthesis.synthesize` runs it.

    Attributes:
      name: e.g. "data_impressions"; recorded in the TransferSet.
      init: `(rng, inputs) -> state`; `inputs` maps names to arrays of leading axis n.
      step: `(state, teacher_variables, rng) -> (state, metrics)`, one optimisation step (or
        one round); `metrics` maps names to scalars and holds "loss".
      images: `state -> (n, H, W, C)` float32 in [0, 1].
      num_steps: steps per chunk, or rounds of a stateful method.
      independent_examples: True when no example's result depends on another chunk's, so the
        engine may cut the examples into chunks; False for methods whose state carries across
        rounds (a memory bank, a projection head, a student), run whole by `rounds.py`.
      group_size: examples that share one objective (BN statistics, contrastive pairs); chunks
        hold whole groups and a group never spans devices.
      config: the method's settings (JSON-serialisable), recorded and checked on resume.
      models: for a stateful method that trains models alongside (SpaceshipNet's student),
        `state -> {name: (jaxinv.models name, variables)}`; `synthesize` saves each as
        `models/<name>` in its workdir. None for none.
      phases: a stateful method's round as phases (:meth:`from_phases`), whose scans `step`
        is; empty for a method whose round is `step` alone.
    """
    name: str
    init: Callable[[jax.Array, dict], Any]
    step: Callable[[Any, Any, jax.Array], tuple[Any, dict]]
    images: Callable[[Any], jax.Array]
    num_steps: int
    independent_examples: bool = True
    group_size: int = 1
    config: dict = dataclasses.field(default_factory=dict)
    models: Callable[[Any], dict[str, tuple[str, Any]]] | None = None
    phases: tuple[Phase, ...] = ()

    @classmethod
    def from_phases(cls, phases: tuple[Phase, ...], **fields) -> SynthesisMethod:
        """A stateful method (num_steps rounds over one state) whose round is `phases`."""
        for phase in phases:
            if not is_count(phase.num_steps):
                raise ValueError(f"The phase {phase.name!r} needs a whole number of steps ≥ 1, "
                                 f"got {phase.num_steps!r}.")
        return cls(step=round_of_phases(tuple(phases)), phases=tuple(phases),
                   independent_examples=False, **fields)


def steps_as_calls() -> bool:
    """Whether the engines run one jitted call per step instead of one scan over the steps:
    on CPU, where XLA runs convolutions inside loops several times slower than in a call of
    their own (jax-ml/jax#12868)."""
    return jax.default_backend() == "cpu"


def default_micro_batch() -> int | None:
    """64 on CPU; None (the whole local chunk at once) on accelerators."""
    return CPU_MICRO_BATCH if jax.default_backend() == "cpu" else None


def clip_to_unit_box(params: jax.Array, inputs: dict) -> jax.Array:
    """Projection onto valid images, values in [0, 1]."""
    del inputs
    return jnp.clip(params, 0.0, 1.0)


def _grouped(tree: Any, group_size: int) -> Any:
    return jax.tree.map(lambda x: x.reshape(x.shape[0] // group_size, group_size, *x.shape[1:]),
                        tree)


def group_gradients(loss_fn: Callable[[Any, Any, dict, jax.Array], jax.Array], *,
                    group_size: int = 1, micro_batch: int | None = None) -> Callable:
    """Every group's loss and each example's gradient, computed where its group lives.

    Splits `rng` into one key per group and evaluates `loss_fn` and its gradient for every group
    on the device that holds it (`shard_map` over `data`), `micro_batch` examples at a time.

    Args:
      loss_fn: `(teacher_variables, params_group, inputs_group, rng) -> scalar` for one group
        of `group_size` examples (leading axis group_size).
      group_size: examples per shared objective.
      micro_batch: examples whose gradients are computed together on one device; a speed and
        memory knob whose results differ by float rounding only. Groups of `micro_batch`
        examples or more are all computed at once, so for them it bounds neither memory nor
        work per call: the chunk size does. Defaults to :func:`default_micro_batch`.

    Returns:
      `fn(teacher_variables, params, inputs, rng) -> (group_losses (n / group_size,), grads)`
      with `grads` shaped like `params` (leading axis n). The objective is the sum over groups,
      so each example's gradient is its own group's, independent of the chunk size.
    """
    if micro_batch is not None and not is_count(micro_batch):
        raise ValueError(f"micro_batch must be ≥ 1, got {micro_batch!r}; None picks "
                         "the default for the backend.")
    if micro_batch is None:
        micro_batch = default_micro_batch()
    value_and_grad = jax.value_and_grad(loss_fn, argnums=1)

    def local_losses_and_grads(teacher_variables, grouped_params, grouped_inputs, group_rngs):
        # Groups never interact, so mapping over them in micro-batches changes only the memory
        # footprint: on CPU a large vmapped batch spills the caches and runs slower per example.
        def one_group(args):
            params, inputs, rng = args
            return value_and_grad(teacher_variables, params, inputs, rng)

        # A group of a micro-batch or more already fills the caches; looping over such groups
        # would only add XLA:CPU's slow convolutions in loops (jax-ml/jax#12868), measured
        # 3.5x slower for DeepInversion's batches of 100 on WRN-10-1. One micro-batch needs no
        # loop either.
        batch_size = (None if micro_batch is None or group_size >= micro_batch
                      else micro_batch // group_size)
        if batch_size is None or len(group_rngs) <= batch_size:
            return jax.vmap(one_group)((grouped_params, grouped_inputs, group_rngs))
        return jax.lax.map(one_group, (grouped_params, grouped_inputs, group_rngs),
                           batch_size=batch_size)

    def losses_and_grads(teacher_variables: Any, params: Any, inputs: dict,
                         rng: jax.Array) -> tuple[jax.Array, Any]:
        num_groups = jax.tree.leaves(params)[0].shape[0] // group_size
        data = PartitionSpec(parallel.DATA_AXIS)
        # shard_map keeps each device's micro-batch loop on its own groups.
        sharded = jax.shard_map(
            local_losses_and_grads, mesh=parallel.data_mesh(),
            in_specs=(PartitionSpec(), data, data, data), out_specs=(data, data))
        group_losses, grouped_grads = sharded(
            teacher_variables, _grouped(params, group_size), _grouped(inputs, group_size),
            jax.random.split(rng, num_groups))
        return group_losses, jax.tree.map(lambda g, p: g.reshape(p.shape), grouped_grads,
                                          params)

    return losses_and_grads


def grouped_pixel_step(init_params: Callable[[jax.Array, dict], Any],
                       loss_fn: Callable[[Any, Any, dict, jax.Array], jax.Array],
                       optimizer: optax.GradientTransformation, *, group_size: int = 1,
                       project: Callable[[Any, dict], Any] | None = clip_to_unit_box,
                       micro_batch: int | None = None) -> tuple[Callable, Callable]:
    """`init` and `step` of a method that optimises per-example parameters by gradient descent.

    The state is `{"params", "opt_state", "inputs"}`, every leaf of params and inputs with
    leading axis n. Each step computes every group's gradient (:func:`group_gradients`) and
    applies one optimiser update and the projection.

    Args:
      init_params: `(rng, inputs) -> params` with leading axis n.
      loss_fn, group_size, micro_batch: see :func:`group_gradients`.
      optimizer: applied to the params of all examples at once; a per-example transformation
        (Adam, SGD) keeps examples independent.
      project: `(params, inputs) -> params` after every update (e.g. clip to [0, 1], or back
        into a ball around a background image); None for none.

    Returns:
      `(init, step)` for a :class:`SynthesisMethod`, whose `images` is then
      `lambda state: render(state["params"])`.
    """
    losses_and_grads = group_gradients(loss_fn, group_size=group_size, micro_batch=micro_batch)

    def init(rng: jax.Array, inputs: dict) -> dict:
        params = init_params(rng, inputs)
        return {"params": params, "opt_state": optimizer.init(params), "inputs": inputs}

    def step(state: dict, teacher_variables: Any, rng: jax.Array) -> tuple[dict, dict]:
        params, inputs = state["params"], state["inputs"]
        group_losses, grads = losses_and_grads(teacher_variables, params, inputs, rng)
        updates, opt_state = optimizer.update(grads, state["opt_state"], params)
        params = optax.apply_updates(params, updates)
        if project is not None:
            params = project(params, inputs)
        num_examples = jax.tree.leaves(params)[0].shape[0]
        return ({"params": params, "opt_state": opt_state, "inputs": inputs},
                {"loss": group_losses.sum() / num_examples})

    return init, step


def pixels(state: dict) -> jax.Array:
    """`images` of a method whose params are the pixels themselves."""
    return state["params"]


