"""Thin wrapper over orbax-checkpoint: a pytree of arrays plus a small JSON record per step.

Orbax writes each step into a temporary folder and renames it only once complete, so a run killed
mid-save never leaves a step that looks finished; the next run restores the latest complete step.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

# What TensorStore says of a file that is truncated or unreadable, as opposed to a checkpoint
# of another structure.
_DAMAGE_SIGNS = ("Error reading", "DATA_LOSS", "OUT_OF_RANGE", "is not valid for value of size",
                 "Unexpected end", "corrupt")


def _looks_damaged(err: Exception) -> bool:
    return any(sign in str(err) for sign in _DAMAGE_SIGNS)


class Checkpoints:
    """Numbered checkpoints in one folder, each holding `state` (arrays) and `meta` (JSON)."""

    def __init__(self, directory: str, *, max_to_keep: int | None = 2):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

    def latest_step(self) -> int | None:
        """The newest complete step, or None when the folder holds none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Every complete step, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict | None = None) -> None:
        """Writes `state` (a pytree of arrays) and `meta` (JSON-serialisable) as `step`."""
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {})))

    def restore(self, step: int, like: Any) -> tuple[Any, dict]:
        """Reads step `step` into the structure, shapes, dtypes and shardings of `like`.

        Raises:
          ValueError: the checkpoint was written for a different structure (another model,
            another method), or is damaged; the message says which folder to delete.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        except Exception as err:  # TensorStore and Orbax raise many types
            if isinstance(err, ValueError | KeyError) and not _looks_damaged(err):
                raise ValueError(
                    f"The checkpoint at {self.directory}/{step} does not fit the current run "
                    f"(different model or state layout): {str(err).splitlines()[0][:300]}. Use "
                    f"a fresh --workdir, or delete {self.directory} to start over.") from err
            raise ValueError(
                f"The checkpoint at {self.directory}/{step} is damaged ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200]}). Delete {self.directory}/{step} and rerun "
                "the same command: it recomputes that step.") from err
        return restored.state, dict(restored.meta)

    def wait(self) -> None:
        """Blocks until asynchronous saves have reached disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finishes pending saves and releases the manager."""
        self._manager.close()

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
