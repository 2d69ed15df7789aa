"""A run's folder: the record of what made it, and the refusal to mix two runs in one place.

Every stage that resumes (a whole run's `config.json`, a synthesis stage's `synthesis.json`)
records what it was started with and checks a rerun against it through :func:`check_record`:
the one place where jaxinv decides whether a folder may be resumed.
"""

from __future__ import annotations

import json
import os
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


def check_record(path: str, record: dict, *, what: str) -> bool:
    """Writes `record` to `path`, or checks that the one there equals it.

    Args:
      path: the JSON file, e.g. `workdir/config.json`.
      record: JSON-serialisable description of the run (its config, its inputs' fingerprints).
      what: what the folder holds, for the message ("a run", "synthesis chunks").

    Returns:
      True when `path` already held this record (the caller resumes), False when written now.

    Raises:
      ValueError: the folder holds another run, or one made by another jaxinv workdir format.
    """
    record = {**report.to_jsonable(record), _FORMAT_KEY: FORMAT}
    folder = os.path.dirname(path) or "."
    if not os.path.exists(path):
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

    Returns:
      True when the workdir already held this run (the caller resumes), False when new.
    """
    os.makedirs(workdir, exist_ok=True)
    return check_record(os.path.join(workdir, CONFIG_FILE), config.to_dict(), what="a run")
