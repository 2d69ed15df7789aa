"""The experiment configs shipped with jaxinv, found from any directory.

`jaxinv run zskd.py:mnist` resolves a bare file name in the bundled `experiments/configs/`:
the repository's (a source checkout or an editable install) or the copy a `pip install`
puts in `<prefix>/share/jaxinv/experiments/configs`.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import ml_collections

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_CANDIDATES = (os.path.join(os.path.dirname(_PACKAGE_DIR), "experiments", "configs"),
               os.path.join(sys.prefix, "share", "jaxinv", "experiments", "configs"))


def bundled_dir() -> str:
    """The folder of the bundled configs."""
    return next((d for d in _CANDIDATES if os.path.isdir(d)), _CANDIDATES[-1])


def resolve(path: str) -> str:
    """`path` if it exists, else the bundled config of that name."""
    if os.path.isfile(path):
        return path
    bundled = os.path.join(bundled_dir(), os.path.basename(path))
    if os.path.isfile(bundled):
        return bundled
    raise FileNotFoundError(f"Config file {path!r} not found, neither here nor among the bundled "
                            f"configs in {bundled_dir()}: {sorted(list_bundled())}.")


def list_bundled() -> list[str]:
    """File names of the bundled configs."""
    directory = bundled_dir()
    return [f for f in os.listdir(directory) if f.endswith(".py") and not f.startswith("_")]


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Calls `get_config(arg)` of the file in `spec` = `path/to/file.py[:arg]`.

    Raises:
      FileNotFoundError: no such file here or among the bundled configs.
      ValueError: the file has no `get_config`.
    """
    path, _, arg = spec.partition(":")
    path = resolve(path)
    module_spec = importlib.util.spec_from_file_location(
        f"jaxinv_config_{os.path.splitext(os.path.basename(path))[0]}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} defines no get_config(arg) -> ConfigDict.")
    return module.get_config(arg) if arg else module.get_config()


def load_sibling(config_file: str, name: str, arg: str) -> ml_collections.ConfigDict:
    """The config `name:arg` from the folder of `config_file` (one config building on another)."""
    return load_config(f"{os.path.join(os.path.dirname(os.path.abspath(config_file)), name)}:{arg}")
