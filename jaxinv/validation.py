"""Checks shared by every config reader."""

from __future__ import annotations


def is_count(value, minimum: int = 1) -> bool:
    """True for a whole number (a Python int, not a bool) of at least `minimum`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
