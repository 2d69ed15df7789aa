"""Synthesis: methods (one module each) and the engines that run them.

A method module `jaxinv/synthesis/<name>.py` is found by name, as big_vision finds its
evaluators, so adding a method is adding one file. It defines

  check_config(config, image_shape, num_classes) -> None
      raises ValueError for settings it cannot run, before anything is trained or written;
  build(teacher, config) -> (SynthesisMethod, inputs, metadata)
      the method, its per-example inputs (a dict of arrays with leading axis N, with "targets"
      (N, K)) and per-example metadata to keep in the TransferSet;
  smoke_config() -> ConfigDict
      a block that runs in seconds, which the shared contract test runs every method with;
  num_examples(config, num_classes) -> int
      how many examples the block makes, so that tasks can check their sizes before any work.

`config` is the run's `synthesis` block: `method` (the module's name), `seed`, `chunk_size` and
`steps_per_call` (examples per compiled chunk, steps per call) or `checkpoint_every` (rounds
between checkpoints of a stateful method), and the method's own settings.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pkgutil
from types import ModuleType

import ml_collections
import numpy as np

from jaxinv import parallel, saved_model
from jaxinv import workdir as workdir_lib
from jaxinv.synthesis import engine, rounds
from jaxinv.synthesis.method import SynthesisMethod
from jaxinv.synthesis.transfer_set import TransferSet
from jaxinv.teacher import Teacher
from jaxinv.validation import is_count

TRANSFER_SET_FILE = "transfer_set.npz"
MODELS_DIR = "models"  # the models a method trained alongside, one folder each
RECORD_FILE = "synthesis.json"
_NOT_METHODS = {"engine", "rounds", "method", "transfer_set", "dirichlet", "online_student"}


def available_methods() -> list[str]:
    """Names of the method modules in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if m.name not in _NOT_METHODS and not m.name.startswith("_"))


def get_method_module(name: str) -> ModuleType:
    """The module of the method called `name`; an unknown name lists the known ones."""
    if name not in available_methods():
        raise ValueError(f"synthesis.method={name!r} is not a jaxinv synthesis method; "
                         f"choose from {available_methods()}.")
    return importlib.import_module(f"{__name__}.{name}")


def fingerprint(array: np.ndarray) -> str:
    """A short hash of an array's bytes, to recognise the same inputs on resume."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def synthesize(method: SynthesisMethod, teacher: Teacher, inputs: dict[str, np.ndarray], *,
               seed: int, workdir: str, metadata: dict[str, np.ndarray] | None = None,
               chunk_size: int | None = None, steps_per_call: int | None = None,
               checkpoint_every: int = 1) -> TransferSet:
    """Synthesises one example per row of `inputs`, resumably, into `workdir`.

    Methods with independent examples run in chunks (`engine.py`), the others round by round
    over one state (`rounds.py`).

    Args:
      method: what to run (see :class:`SynthesisMethod`).
      teacher: the frozen classifier.
      inputs: per-example arrays of leading size N; "targets" (N, K) is required.
      seed: the run seed; every draw derives from it.
      workdir: where chunks or round checkpoints, `transfer_set.npz` and the method's trained
        models (`models/<name>`, see :class:`SynthesisMethod`) go; a rerun with the same
        arguments resumes.
      metadata: per-example arrays kept in the TransferSet (class, β, ...).
      chunk_size: examples per compiled chunk (independent examples only); a multiple of the
        device count and the group size; defaults to all N.
      steps_per_call: steps per compiled call within a chunk; defaults to all.
      checkpoint_every: rounds between checkpoints of a stateful method.

    Returns:
      The TransferSet, bit-identical whether or not the run was interrupted.

    Raises:
      FloatingPointError: the objective became NaN or inf; names method, chunk and step.
      ValueError: bad sizes, or `workdir` holds a synthesis run of another config.
    """
    inputs = {k: np.asarray(v) for k, v in inputs.items()}
    if "targets" not in inputs or inputs["targets"].ndim != 2 or not len(inputs["targets"]):
        raise ValueError("inputs must hold 'targets' of shape (N, K) with N ≥ 1; got "
                         f"{ {k: v.shape for k, v in inputs.items()} }.")
    num_examples = len(inputs["targets"])
    if method.num_steps < 1:
        raise ValueError(f"{method.name}: num_steps must be ≥ 1, got {method.num_steps}.")
    metadata = {k: np.asarray(v) for k, v in (metadata or {}).items()}
    if method.independent_examples:
        chunk_size = chunk_size or num_examples
        steps_per_call = steps_per_call or method.num_steps
        engine.check_chunking(method, chunk_size, steps_per_call)
    record = {"method": method.name, "method_config": method.config, "seed": seed,
              "chunk_size": chunk_size if method.independent_examples else None,
              "num_examples": num_examples,
              "inputs": {k: fingerprint(v) for k, v in sorted(inputs.items())}}
    os.makedirs(workdir, exist_ok=True)
    workdir_lib.check_record(os.path.join(workdir, RECORD_FILE), record,
                             what="a synthesis run",
                             replaceable=not workdir_lib.holds_work(workdir, RECORD_FILE))
    final_path = os.path.join(workdir, TRANSFER_SET_FILE)
    if os.path.exists(final_path):
        return TransferSet.load(final_path)
    if method.independent_examples:
        outputs = engine.run_chunks(method, teacher, inputs, seed=seed, chunk_size=chunk_size,
                                    steps_per_call=steps_per_call, workdir=workdir)
        metadata["chunk"] = outputs.pop("chunk")
    else:
        outputs = rounds.run_rounds(method, teacher, inputs, seed=seed,
                                    checkpoint_every=checkpoint_every, workdir=workdir)
        for name, (model, variables) in outputs["models"].items():
            # Saved before the TransferSet, whose file marks the run finished.
            saved_model.save_model(
                os.path.join(workdir, MODELS_DIR, name),
                saved_model.ModelCard(model=model, num_classes=teacher.num_classes,
                                      image_shape=tuple(teacher.image_shape),
                                      dataset=teacher.dataset,
                                      image_size=int(teacher.image_shape[0])), variables)
    transfer_set = TransferSet(images=outputs["images"], logits=outputs["logits"],
                               targets=inputs["targets"].astype(np.float32), metadata=metadata,
                               method=method.name, seed=seed, config=method.config)
    transfer_set.save(final_path)
    return transfer_set


def check_config(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
                 num_classes: int) -> int:
    """Everything about a `synthesis` block that can be checked before a teacher exists.

    Returns:
      The number of examples the block makes.
    """
    module = get_method_module(config.get("method", ""))
    seed = config.get("seed", 0)
    if not is_count(seed, minimum=0):
        raise ValueError(f"synthesis.seed must be a whole number ≥ 0, got {seed!r}.")
    module.check_config(config, image_shape, num_classes)
    # The engines' sizes, so that a bad one is refused before the run's workdir is made.
    for key in ("chunk_size", "steps_per_call", "checkpoint_every"):
        value = config.get(key)
        if value is not None and not is_count(value):
            raise ValueError(f"synthesis.{key} must be a whole number ≥ 1 (or None for the "
                             f"default), got {value!r}.")
    if config.get("chunk_size"):
        parallel.check_divisible(config.chunk_size, "synthesis.chunk_size")
    num_steps, steps_per_call = config.get("num_steps"), config.get("steps_per_call")
    if isinstance(num_steps, int) and steps_per_call and num_steps % steps_per_call:
        raise ValueError(f"synthesis.num_steps {num_steps} is not a multiple of steps_per_call "
                         f"{steps_per_call}; choose a divisor of {num_steps}.")
    return module.num_examples(config, num_classes)


def synthesize_from_config(teacher: Teacher, config: ml_collections.ConfigDict,
                           workdir: str) -> TransferSet:
    """Builds the method `config.method` for `teacher` and synthesises into `workdir`."""
    check_config(config, teacher.image_shape, teacher.num_classes)
    method, inputs, metadata = get_method_module(config.method).build(teacher, config)
    return synthesize(method, teacher, inputs, metadata=metadata, seed=config.seed,
                      workdir=workdir, chunk_size=config.get("chunk_size"),
                      steps_per_call=config.get("steps_per_call"),
                      checkpoint_every=config.get("checkpoint_every", 1))
