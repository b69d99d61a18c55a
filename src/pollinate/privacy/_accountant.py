"""The accountant: a thin bridge to Google's ``dp-accounting`` (PLD, or RDP as an option).

Each round of central DP is one Poisson-sampled Gaussian event: every node is in the round
with probability ``q`` (the sampling rate) and the sum of the clipped updates gets Gaussian
noise of ``z`` (the noise multiplier) times the clip. The privacy is node-level (a node's
whole data set, added or removed) and the rounds compose. ``dp-accounting`` is imported
only when a figure is asked for.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal, TypeAlias

from ..errors import ConfigError

__all__ = [
    "Accountant",
    "calibrate_noise_multiplier",
    "check_accountant",
    "check_delta",
    "check_positive",
    "dp_accounting",
    "epsilon",
    "history_rounds",
]

Accountant: TypeAlias = Literal["pld", "rdp"]
"""``"pld"``: privacy loss distributions (tight; the default). ``"rdp"``: Renyi DP (looser)."""

ACCOUNTANTS = ("pld", "rdp")

_NOISE_BRACKET = (0.25, 1e3)
"""The noise multipliers calibration searches between (below 0.25 a PLD grows huge)."""


def epsilon(
    rounds: Iterable[tuple[float, float]], delta: float, accountant: Accountant = "pld"
) -> float:
    """The epsilon at ``delta`` of rounds given as ``(sampling rate, noise multiplier)``.

    Runs of equal rounds are composed as one self-composed event, so T equal rounds cost
    about as much as one. 0.0 for no rounds; ``inf`` if a round had no noise.
    """
    runs = _runs(rounds)
    if not runs:
        return 0.0
    return _epsilon(runs, float(delta), check_accountant(accountant))


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sampling_rate: float,
    num_rounds: int,
    accountant: Accountant = "pld",
) -> float:
    """The smallest noise multiplier whose ``num_rounds`` rounds stay within ``target_epsilon``.

    A bisection on dp-accounting's accountant to 0.1% of the result; the multiplier returned
    is the upper end of the last bracket, so its epsilon is at most the target.
    """
    check_positive("target_epsilon", target_epsilon)
    check_delta(delta)
    return _calibrated(
        float(target_epsilon),
        float(delta),
        float(sampling_rate),
        int(num_rounds),
        check_accountant(accountant),
    )


@functools.lru_cache(maxsize=256)
def _epsilon(runs: tuple[tuple[float, float, int], ...], delta: float, accountant: str) -> float:
    dp = dp_accounting()
    if any(z == 0.0 for _, z, _ in runs):
        return math.inf
    ledger = _new_accountant(dp, accountant, min(z for _, z, _ in runs))
    ledger.compose(dp.ComposedDpEvent([_event(dp, q, z, count) for q, z, count in runs]))
    return float(ledger.get_epsilon(delta))


@functools.lru_cache(maxsize=32)
def _calibrated(target: float, delta: float, q: float, rounds: int, accountant: str) -> float:
    """Bisection on the accountant: a bracket found by doubling, then halved to 0.1%."""

    def within(z: float) -> bool:
        return _epsilon(((q, z, rounds),), delta, accountant) <= target

    low, high = _NOISE_BRACKET
    if not within(high):
        raise ConfigError(
            f"target_epsilon={target} at delta={delta} cannot be reached in {rounds} rounds at "
            f"sampling rate {q:g} even with noise multiplier {high:g}: raise target_epsilon, "
            "sample fewer nodes a round (fraction_train) or plan fewer rounds"
        )
    upper = 1.0
    while not within(upper):
        upper *= 2
    lower = upper / 2
    while lower > low and within(lower):
        lower, upper = lower / 2, lower
    if lower <= low:
        return upper
    while upper - lower > 1e-3 * upper:
        middle = (lower + upper) / 2
        if within(middle):
            upper = middle
        else:
            lower = middle
    return upper


def _event(dp: Any, q: float, z: float, count: int) -> Any:
    gaussian = dp.GaussianDpEvent(z)
    one = gaussian if q >= 1.0 else dp.PoissonSampledDpEvent(q, gaussian)
    return dp.SelfComposedDpEvent(one, count)


PLD_FINE_Z = 0.5
"""Down to this noise multiplier a PLD keeps dp-accounting's default grid (1e-4)."""

PLD_MIN_Z = 0.01
"""Below this, a PLD's grid overflows; RDP's bound (an epsilon beyond use anyway) stands in."""


def _new_accountant(dp: Any, accountant: str, least_z: float) -> Any:
    """The accountant asked for, able to take noise multipliers down to ``least_z``.

    A PLD's grid of privacy losses grows as ``1 / z^2``: below ``PLD_FINE_Z`` it is made
    coarser in proportion, which keeps its epsilon an upper bound (dp-accounting rounds
    pessimistically) and its size bounded.
    """
    if accountant == "rdp" or least_z < PLD_MIN_Z:
        return dp.rdp.RdpAccountant()
    interval = 1e-4 * max(1.0, (PLD_FINE_Z / least_z) ** 2)
    return dp.pld.PLDAccountant(value_discretization_interval=interval)


def _runs(rounds: Iterable[tuple[float, float]]) -> tuple[tuple[float, float, int], ...]:
    """Consecutive equal rounds as ``(q, z, count)``."""
    runs: list[list[Any]] = []
    for q, z in rounds:
        if runs and runs[-1][0] == q and runs[-1][1] == z:
            runs[-1][2] += 1
        else:
            runs.append([float(q), float(z), 1])
    return tuple((q, z, count) for q, z, count in runs)


def dp_accounting() -> Any:
    """The ``dp_accounting`` package, or ConfigError naming the extra that installs it."""
    try:
        import dp_accounting  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(
            "privacy accounting needs Google's dp-accounting: pip install 'pollinate[privacy]'"
        ) from None
    return dp_accounting


def check_accountant(accountant: object) -> Accountant:
    """``accountant`` if it is one pollinate knows, else ConfigError naming them."""
    if accountant == "pld" or accountant == "rdp":
        return accountant
    raise ConfigError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {accountant!r}")


def check_positive(name: str, value: object) -> float:
    """``value`` as a float if it is a finite positive number, else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be positive and finite, got {value}")
    return float(value)


def check_delta(delta: object) -> float:
    """``delta`` if it is in (0, 1), else ConfigError."""
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise ConfigError(
            f"delta must be between 0 and 1 (below 1 / number of nodes), got {delta!r}"
        )
    return float(delta)


def history_rounds(history: Iterable[Sequence[float]]) -> list[tuple[float, float]]:
    """The ``(q, z)`` of each row of an accountant's history ``[q, z, clip]``."""
    return [(float(row[0]), float(row[1])) for row in history]
