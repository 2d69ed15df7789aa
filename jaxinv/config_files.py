"""Loading experiment config files (`path.py[:arg]`) and applying `--config.key=value`."""

from __future__ import annotations

import ast
import importlib.util
import os

import ml_collections


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Calls `get_config(arg)` of the file in `spec` = `path/to/file.py[:arg]`.

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file has no `get_config`.
    """
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file {path!r} not found; configs live in "
                                "experiments/configs/, e.g. experiments/configs/teacher.py:mnist.")
    module_spec = importlib.util.spec_from_file_location("jaxinv_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} defines no get_config(arg) -> ConfigDict.")
    return module.get_config(arg) if arg else module.get_config()


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word such as `cosine` is a string


def _all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in config.items():
        keys += (_all_keys(v, f"{prefix}{k}.") if isinstance(v, ml_collections.ConfigDict)
                 else [f"{prefix}{k}"])
    return keys


def apply_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets the dotted `key` to the Python literal in `text`, keeping the field's type.

    Raises:
      KeyError: `key` is not in the config; the message lists the keys that are.
      TypeError: the value's type does not fit the field.
    """
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
        node = node.get(name) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        raise KeyError(f"--config.{key}: no such config key. Valid keys: "
                       + ", ".join(_all_keys(config)))
    value = _parse_value(text)
    if isinstance(node[leaf], float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    try:
        node[leaf] = value
    except TypeError as err:
        raise TypeError(f"--config.{key}={text}: {err}") from err
