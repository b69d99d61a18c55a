"""Checks of the figures DP pieces are given: one ConfigError naming the figure and the fix.

numpy scalars (``np.float32(1.0)``, ``np.int64(10)``) are numbers here; booleans are not.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import ConfigError

__all__ = ["check_delta", "check_positive", "check_rate", "check_rounds", "is_number"]


def is_number(value: object) -> bool:
    """Whether ``value`` is a real number (numpy's included), not a boolean."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_positive(name: str, value: object) -> float:
    """``value`` as a float if it is a finite positive number, else ConfigError."""
    if not is_number(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(f"{name} must be positive and finite, got {value}")
    return number


def check_delta(delta: object) -> float:
    """``delta`` as a float if it is in (0, 1), else ConfigError."""
    if not is_number(delta) or not 0 < float(delta) < 1:  # type: ignore[arg-type]
        raise ConfigError(
            f"delta must be between 0 and 1 (below 1 / number of nodes), got {delta!r}"
        )
    return float(delta)  # type: ignore[arg-type]


def check_rate(name: str, rate: object) -> float:
    """``rate`` as a float if it is a sampling rate in (0, 1], else ConfigError."""
    if not is_number(rate) or not 0 < float(rate) <= 1:  # type: ignore[arg-type]
        raise ConfigError(
            f"{name} must be in (0, 1], the share of nodes each round samples, got {rate!r}"
        )
    return float(rate)  # type: ignore[arg-type]


def check_rounds(name: str, rounds: object) -> int:
    """``rounds`` as an int if it is a whole number 1 or more, else ConfigError."""
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral) or rounds < 1:
        raise ConfigError(f"{name} must be a whole number, 1 or more, got {rounds!r}")
    return int(rounds)
