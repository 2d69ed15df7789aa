"""A run's folder: the record of what made it, and the refusal to mix two runs in one place.

Every stage that resumes (a whole run's `config.json`, a synthesis stage's `synthesis.json`)
records what it was started with and checks a rerun against it through :func:`check_record`:
the one place where jaxinv decides whether a folder may be resumed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from typing import Any

from jaxinv import report

CONFIG_FILE = "config.json"
# Bumped when the layout of a workdir changes; a folder of another format is refused, never
# converted.
FORMAT = 2
_FORMAT_KEY = "jaxinv_workdir_format"


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def config_differences(old: dict, new: dict) -> list[str]:
    """Human-readable `key: old -> new` lines for every leaf that differs."""
    old_flat, new_flat = _flatten(old), _flatten(new)
    keys = sorted(set(old_flat) | set(new_flat))
    return [f"{k}: {old_flat.get(k, '<absent>')!r} -> {new_flat.get(k, '<absent>')!r}"
            for k in keys if old_flat.get(k, "<absent>") != new_flat.get(k, "<absent>")]


def read_record(path: str) -> dict:
    """A JSON record written by :func:`check_record`; a damaged one gets a message naming it."""
    try:
        return report.read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged ({err}); delete it and rerun the same command, "
                         "which writes it again.") from err


def check_record(path: str, record: dict, *, what: str, replaceable: bool = False) -> bool:
    """Writes `record` to `path`, or checks that the one there equals it.

    Args:
      path: the JSON file, e.g. `workdir/config.json`.
      record: JSON-serialisable description of the run (its config, its inputs' fingerprints).
      what: what the folder holds, for the message ("a run", "synthesis chunks").
      replaceable: the folder holds no finished work yet (a failed start), so a record of
        another config is replaced instead of refused.

    Returns:
      True when `path` already held this record (the caller resumes), False when written now.

    Raises:
      ValueError: the folder holds another run, or one made by another jaxinv workdir format.
    """
    record = {**report.to_jsonable(record), _FORMAT_KEY: FORMAT}
    folder = os.path.dirname(path) or "."
    if not os.path.exists(path) or replaceable:
        report.write_json(path, record)
        return False
    saved = read_record(path)
    if saved.get(_FORMAT_KEY) != FORMAT:
        raise ValueError(f"{folder} was written by an older jaxinv (workdir format "
                         f"{saved.get(_FORMAT_KEY, 1)}, this one reads {FORMAT}), so it cannot "
                         "be resumed. Use a fresh --workdir, or delete the folder and rerun.")
    diffs = config_differences(saved, record)
    if diffs:
        raise ValueError(f"{folder} holds {what} with a different config, so it cannot be "
                         "resumed:\n  " + "\n  ".join(diffs)
                         + "\nUse a fresh --workdir, or rerun with the original config.")
    return True


def open_workdir(workdir: str, config) -> bool:
    """Creates `workdir` with `config.json`, or checks that an existing one holds `config`.

    A workdir holding nothing but its config and empty folders (a start that failed before any
    stage wrote a file) takes the new config, so a corrected command is never refused.

    Returns:
      True when the workdir already held this run (the caller resumes), False when new.
    """
    os.makedirs(workdir, exist_ok=True)
    return check_record(os.path.join(workdir, CONFIG_FILE), config.to_dict(), what="a run",
                        replaceable=not holds_work(workdir, CONFIG_FILE))


def holds_work(folder: str, record_file: str) -> bool:
    """True when `folder` holds a file other than its record and lock: finished work."""
    for root, _, files in os.walk(folder):
        if any(root != folder or name not in (record_file, LOCK_FILE) for name in files):
            return True
    return False


LOCK_FILE = ".jaxinv.lock"


@contextlib.contextmanager
def locked(workdir: str, *, wait: bool = False) -> Iterator[None]:
    """Holds an advisory lock on `workdir` for one process.

    Args:
      wait: wait for another holder to finish (a shared teacher being trained) instead of
        refusing at once.

    Raises:
      ValueError: another process holds the lock and `wait` is False; names its pid.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise ValueError(f"{workdir} is in use by another jaxinv process (pid {holder}); "
                             "wait for it to finish, or stop it, then rerun.") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
