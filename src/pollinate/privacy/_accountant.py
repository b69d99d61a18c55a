"""The accountant: a thin bridge to Google's ``dp-accounting`` (PLD, or RDP as an option).

Each round of central DP is one Poisson-sampled Gaussian event: every node is in the round
with probability ``q`` (the sampling rate) and the sum of the clipped updates gets Gaussian
noise of ``z`` (the noise multiplier) times the clip. The privacy is node-level (a node's
whole data set, added or removed) and the rounds compose. ``dp-accounting`` is imported
only when a figure is asked for.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, TypeAlias

from ..errors import ConfigError
from ._checks import check_delta, check_positive, check_rate, check_rounds, is_number

__all__ = [
    "Accountant",
    "calibrate_noise_multiplier",
    "check_accountant",
    "dp_accounting",
    "epsilon",
    "history_rounds",
]

Accountant: TypeAlias = Literal["pld", "rdp"]
"""``"pld"``: privacy loss distributions (tight; the default). ``"rdp"``: Renyi DP (looser)."""

ACCOUNTANTS = ("pld", "rdp")

_NOISE_BRACKET = (0.05, 1e3)
"""The noise multipliers calibration searches between (at 0.05 epsilon is in the hundreds
for all but the sparsest sampling: no target worth having needs less)."""


def epsilon(
    rounds: Iterable[tuple[float, float]], delta: float, accountant: Accountant = "pld"
) -> float:
    """The epsilon at ``delta`` of rounds given as ``(sampling rate, noise multiplier)``.

    Composition commutes, so the rounds are grouped by their ``(q, z)``; each group's PLD
    is kept and extended by the rounds added since, so a run's per-round figure costs one
    composition, not a recount of every round. 0.0 for no rounds; ``inf`` if a round had
    no noise.
    """
    runs = _runs(_checked(rounds))
    if not runs:
        return 0.0
    return _epsilon(runs, check_delta(delta), check_accountant(accountant))


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
    return _calibrated(
        check_positive("target_epsilon", target_epsilon),
        check_delta(delta),
        check_rate("sampling_rate", sampling_rate),
        check_rounds("num_rounds", num_rounds),
        check_accountant(accountant),
    )


def _checked(rounds: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """``rounds`` as floats, or ConfigError naming the first bad rate or noise multiplier."""
    checked = []
    for q, z in rounds:
        rate = check_rate("sampling rate", q)
        if not is_number(z) or not (math.isfinite(float(z)) and float(z) >= 0):
            raise ConfigError(f"noise multiplier must be 0 or more and finite, got {z!r}")
        checked.append((rate, float(z)))
    return checked


@functools.lru_cache(maxsize=256)
def _epsilon(runs: tuple[tuple[float, float, int], ...], delta: float, accountant: str) -> float:
    """The epsilon of ``runs`` (each ``(q, z, count)`` once, sorted), PLDs kept for next time."""
    return _composed_epsilon(runs, delta, accountant, keep=True)


def _composed_epsilon(
    runs: tuple[tuple[float, float, int], ...], delta: float, accountant: str, keep: bool
) -> float:
    if any(z == 0.0 for _, z, _ in runs):
        return math.inf
    dp = dp_accounting()
    least_z = min(z for _, z, _ in runs)
    if accountant == "rdp" or least_z < PLD_MIN_Z:
        ledger = dp.rdp.RdpAccountant()
        with _unconverged_orders_dropped_quietly():
            ledger.compose(dp.ComposedDpEvent([_event(dp, q, z, count) for q, z, count in runs]))
            return float(ledger.get_epsilon(delta))
    interval = _interval(least_z)
    plds = [_group_pld(q, z, count, interval, keep) for q, z, count in runs]
    total = functools.reduce(lambda a, b: a.compose(b), plds)
    return float(total.get_epsilon_for_delta(delta))


@functools.lru_cache(maxsize=32)
def _calibrated(target: float, delta: float, q: float, rounds: int, accountant: str) -> float:
    """Bisection on the accountant: a bracket found by doubling or halving, then cut to 0.1%.

    The least noise searched is ``_NOISE_BRACKET[0]``: a target it reaches gets that.
    """

    def within(z: float) -> bool:  # each z is tried once: nothing kept for it
        return _composed_epsilon(((q, z, rounds),), delta, accountant, keep=False) <= target

    least = _NOISE_BRACKET[0]
    check_reachable(target, delta, q, rounds, accountant)
    upper = 1.0
    while not within(upper):
        upper *= 2
    lower = upper / 2
    while within(lower):  # epsilon falls as z grows: the least z lies below
        if lower <= least:
            return least
        upper, lower = lower, max(lower / 2, least)
    while upper - lower > 1e-3 * upper:
        middle = (lower + upper) / 2
        if within(middle):
            upper = middle
        else:
            lower = middle
    return upper


def check_reachable(target: float, delta: float, q: float, rounds: int, accountant: str) -> None:
    """ConfigError if even the largest noise multiplier calibration tries spends too much."""
    high = _NOISE_BRACKET[1]
    if _composed_epsilon(((q, high, rounds),), delta, accountant, keep=False) > target:
        raise ConfigError(
            f"target_epsilon={target} at delta={delta} cannot be reached in {rounds} rounds at "
            f"sampling rate {q:g} even with noise multiplier {high:g}: raise target_epsilon, "
            "sample fewer nodes a round (fraction_train) or plan fewer rounds"
        )


class _UnconvergedOrder(logging.Filter):
    """Drops dp-accounting's note that an RDP order did not converge; passes all else.

    The order is left out of the minimum over orders, so the epsilon is still an upper
    bound: the note is noise to a user (five lines a round), not a problem.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("_compute_log_a_frac failed to converge")


@contextlib.contextmanager
def _unconverged_orders_dropped_quietly() -> Iterator[None]:
    """Around an RDP computation: absl's logger without the notes of unconverged orders."""
    absl, only = logging.getLogger("absl"), _UnconvergedOrder()
    absl.addFilter(only)
    try:
        yield
    finally:
        absl.removeFilter(only)


def _event(dp: Any, q: float, z: float, count: int) -> Any:
    gaussian = dp.GaussianDpEvent(z)
    one = gaussian if q >= 1.0 else dp.PoissonSampledDpEvent(q, gaussian)
    return dp.SelfComposedDpEvent(one, count)


PLD_FINE_Z = 0.5
"""Down to this noise multiplier a PLD keeps dp-accounting's default grid (1e-4)."""

PLD_MIN_Z = 0.01
"""Below this, a PLD's grid overflows; RDP's bound (an epsilon beyond use anyway) stands in."""


def _interval(least_z: float) -> float:
    """The PLD grid for noise multipliers down to ``least_z``.

    A PLD's grid of privacy losses grows as ``1 / z^2``: below ``PLD_FINE_Z`` it is made
    coarser in proportion, which keeps its epsilon an upper bound (dp-accounting rounds
    pessimistically) and its size bounded.
    """
    return 1e-4 * max(1.0, (PLD_FINE_Z / least_z) ** 2)


KEPT_PLDS = 8
"""How many composed PLDs are kept to be extended (a run needs one per distinct (q, z))."""

_kept: OrderedDict[tuple[float, float, float, int], Any] = OrderedDict()
"""Composed PLDs by ``(q, z, interval, rounds)``, the least recently used first."""


@functools.lru_cache(maxsize=KEPT_PLDS)
def _one_round(q: float, z: float, interval: float) -> Any:
    """The PLD of one Poisson-sampled Gaussian round (the costly part: built once)."""
    module = dp_accounting().pld.privacy_loss_distribution
    return module.from_gaussian_mechanism(
        standard_deviation=z, value_discretization_interval=interval, sampling_prob=q
    )


def _group_pld(q: float, z: float, count: int, interval: float, keep: bool) -> Any:
    """The PLD of ``count`` rounds at ``(q, z)``: a kept one extended, or self-composed.

    Full participation (``q = 1``) is one Gaussian of ``z / sqrt(count)``, as exact and cheap.
    """
    module = dp_accounting().pld.privacy_loss_distribution
    if q >= 1.0:
        return module.from_gaussian_mechanism(
            standard_deviation=z / math.sqrt(count), value_discretization_interval=interval
        )
    if not keep:
        one = module.from_gaussian_mechanism(
            standard_deviation=z, value_discretization_interval=interval, sampling_prob=q
        )
        return one if count == 1 else one.self_compose(count)
    one = _one_round(q, z, interval)
    fewer = [n for (q_, z_, i_, n) in _kept if (q_, z_, i_) == (q, z, interval) and n <= count]
    if fewer:
        start = max(fewer)
        composed = _kept[(q, z, interval, start)]
        if start < count:
            more = count - start
            composed = composed.compose(one if more == 1 else one.self_compose(more))
    else:
        composed = one if count == 1 else one.self_compose(count)
    _kept[(q, z, interval, count)] = composed
    _kept.move_to_end((q, z, interval, count))
    while len(_kept) > KEPT_PLDS:
        _kept.popitem(last=False)
    return composed


def _runs(rounds: Iterable[tuple[float, float]]) -> tuple[tuple[float, float, int], ...]:
    """The rounds grouped by ``(q, z)`` as ``(q, z, count)``, in order (composition commutes)."""
    counts = Counter((float(q), float(z)) for q, z in rounds)
    return tuple((q, z, count) for (q, z), count in sorted(counts.items()))


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


def history_rounds(history: Iterable[Sequence[float]]) -> list[tuple[float, float]]:
    """The ``(q, z)`` of each row of an accountant's history ``[q, z, clip]``."""
    return [(float(row[0]), float(row[1])) for row in history]
