"""A run's folder: its config, and the refusal to mix two different runs in one place."""

from __future__ import annotations

import os
from typing import Any

import ml_collections

from jaxinv import report

CONFIG_FILE = "config.json"
# Keys added to recorded configs after runs were made (a run's config.json, and the method
# config in a synthesis run's synthesis.json), each with the value that does what runs made
# before it did. A saved config without such a key matches a new one that holds that value,
# so older workdirs still resume; any other value is a real difference.
_IMPRESSIONS_OPTIONS_ADDED_LATER = {"tv_l2": 0.0, "jitter": 0, "pixel_l1": 0.0,
                                    "init_resolution": None}
KEYS_ADDED_LATER = {**{f"{section}.{name}": value
                       for section in ("synthesis", "method_config")
                       for name, value in _IMPRESSIONS_OPTIONS_ADDED_LATER.items()},
                    "synthesis.from_workdir": "", "distill.num_seeds": 1,
                    "distill.augment.mixup": 0.0}


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def config_differences(old: dict, new: dict) -> list[str]:
    """Human-readable `key: old -> new` lines for every leaf that differs.

    A key of `KEYS_ADDED_LATER` that `old` lacks counts as holding its earlier behaviour.
    """
    old_flat, new_flat = _flatten(old), _flatten(new)
    for key, earlier_value in KEYS_ADDED_LATER.items():
        if key in new_flat and key not in old_flat:
            old_flat[key] = earlier_value
    keys = sorted(set(old_flat) | set(new_flat))
    return [f"{k}: {old_flat.get(k, '<absent>')!r} -> {new_flat.get(k, '<absent>')!r}"
            for k in keys if old_flat.get(k, "<absent>") != new_flat.get(k, "<absent>")]


def open_workdir(workdir: str, config: ml_collections.ConfigDict) -> bool:
    """Creates `workdir` with `config.json`, or checks that an existing one holds this config.

    Returns:
      True when the workdir already held this run (so the caller resumes), False when new.

    Raises:
      ValueError: the workdir holds a run with a different config (another model, dataset or
        hyperparameter); resuming it would mix two runs.
    """
    config_dict = report.to_jsonable(config.to_dict())
    path = os.path.join(workdir, CONFIG_FILE)
    if os.path.exists(path):
        diffs = config_differences(report.read_json(path), config_dict)
        if diffs:
            raise ValueError(
                f"{workdir} holds a run with a different config, so it cannot be resumed:\n  "
                + "\n  ".join(diffs)
                + "\nUse a fresh --workdir, or rerun with the original config.")
        return True
    os.makedirs(workdir, exist_ok=True)
    report.write_json(path, config_dict)
    return False
