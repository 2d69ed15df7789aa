"""Checks shared by every config reader."""

from __future__ import annotations

import math


def is_count(value, minimum: int = 1) -> bool:
    """True for a whole number (a Python int, not a bool) of at least `minimum`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_loss_weights(weights: dict, names: tuple[str, ...], where: str = "synthesis") -> None:
    """Raises unless `weights` holds exactly `names`, each a finite number ≥ 0."""
    if set(weights) != set(names):
        raise ValueError(f"{where}.weights must hold exactly {names}, got {sorted(weights)}.")
    bad = {k: v for k, v in weights.items() if not (math.isfinite(v) and v >= 0)}
    if bad:
        raise ValueError(f"{where}.weights must be ≥ 0 (0 switches a term off), got {bad}.")
