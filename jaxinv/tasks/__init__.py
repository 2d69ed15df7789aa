"""Tasks: what a TransferSet is used for, one module each, found by name.

A task module `jaxinv/tasks/<name>.py` defines

  check_config(config, num_examples) -> None
      raises ValueError for settings it cannot run on a TransferSet of `num_examples`, before
      anything is trained or written;
  run(config, teacher, transfer_set, workdir) -> dict
      does the work in `workdir` (resuming what an earlier run finished) and returns the
      figures to report.

`config` is the whole run config; the task reads its own block, `config[<name>]`. A task never
knows which method made its TransferSet.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def available_tasks() -> list[str]:
    """Names of the task modules in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def task_block(config, name: str, keys: tuple[str, ...]):
    """`config[name]`, refused with one message when it lacks any of `keys`. (The pipeline has
    already checked that the block exists.)"""
    block = config[name]
    missing = [key for key in keys if key not in block]
    if missing:
        raise ValueError(f"The {name} block lacks {missing}; it needs {list(keys)}.")
    return block


def get_task_module(name: str) -> ModuleType:
    """The module of the task called `name`; an unknown name lists the known ones."""
    if name not in available_tasks():
        raise ValueError(f"task={name!r} is not a jaxinv task; choose from {available_tasks()}.")
    return importlib.import_module(f"{__name__}.{name}")
