"""Shared test set-up: 8 simulated CPU devices and the real data folder."""

import os
import pathlib

import jax
import pytest

# DESIGN.md: tests run on 8 simulated CPU devices; this must happen before any device is used.
jax.config.update("jax_num_cpu_devices", 8)

# Where CI keeps the real datasets relative to the repository (JAXINV_DATA_DIR=../shared/data).
_SIBLING_DATA_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def data_dir() -> str:
    """The folder of real npz datasets: $JAXINV_DATA_DIR, else ../shared/data next to the repo."""
    path = os.environ.get("JAXINV_DATA_DIR")
    if path:
        return path
    if _SIBLING_DATA_DIR.is_dir():
        return str(_SIBLING_DATA_DIR)
    pytest.skip("real datasets not found: set JAXINV_DATA_DIR to the folder holding mnist.npz "
                "and the other files described in shared/data/README.md")
