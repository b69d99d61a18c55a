"""SecAgg+'s parameters (named as Flower names them) and the checks that refuse unsafe ones.

What does not depend on the round is checked when ``SecAggPlus`` is built; what depends on
how many nodes a round samples (shares, threshold, overflow of the modulus) is resolved by
``RoundParams.resolve`` before the round's first message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import ConfigError

__all__ = ["Params", "RoundParams"]


@dataclass(frozen=True, slots=True)
class Params:
    """The settings of SecAgg+, checked when made (see ``SecAggPlus`` for each one's meaning)."""

    num_shares: int | float
    reconstruction_threshold: int | float
    max_weight: float = 1000.0
    clipping_range: float = 8.0
    quantization_range: int = 2**22
    modulus_range: int = 2**64
    timeout: float | None = None

    def __post_init__(self) -> None:
        _check_shares(self.num_shares)
        _check_threshold(self.reconstruction_threshold, self.num_shares)
        if not (math.isfinite(self.max_weight) and self.max_weight >= 1):
            raise ConfigError(
                f"max_weight must be a finite number of at least 1 (the largest integer weight "
                f"a node may have, e.g. its example count), got {self.max_weight}"
            )
        if not (math.isfinite(self.clipping_range) and self.clipping_range > 0):
            raise ConfigError(f"clipping_range must be positive, got {self.clipping_range}")
        modulus = self.modulus_range
        if not (
            isinstance(modulus, int) and 2 <= modulus <= 2**64 and modulus & (modulus - 1) == 0
        ):
            raise ConfigError(
                f"modulus_range must be a power of two from 2 to 2**64, got {modulus}: "
                "sums then wrap around for free in 32- or 64-bit integers"
            )
        quantization = self.quantization_range
        if not (isinstance(quantization, int) and 2 <= quantization < modulus):
            raise ConfigError(
                f"quantization_range must be an integer from 2 to modulus_range - 1 "
                f"({modulus - 1}), got {quantization}"
            )
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"timeout must be positive seconds or None, got {self.timeout}")


@dataclass(frozen=True, slots=True)
class RoundParams:
    """The settings as one round of ``num_nodes`` nodes uses them."""

    num_nodes: int
    num_shares: int
    threshold: int
    weight_cap: int
    """The largest integer weight factor (``max_weight``, or 1 when unweighted)."""

    @classmethod
    def resolve(cls, params: Params, num_nodes: int, weighted: bool) -> RoundParams:
        """The round's shares and threshold; ConfigError if the round cannot run safely."""
        shares = _round_shares(params.num_shares, num_nodes)
        if shares > num_nodes:
            raise ConfigError(
                f"SecAgg+ num_shares={params.num_shares} needs rounds of at least {shares} "
                f"nodes, but this round samples {num_nodes}: lower num_shares or raise "
                "min_train_nodes"
            )
        threshold = _round_threshold(params.reconstruction_threshold, shares)
        _check_majority(threshold, shares)
        cap = math.floor(params.max_weight) if weighted else 1
        largest_sum = num_nodes * cap * (params.quantization_range - 1)
        if largest_sum >= params.modulus_range:
            raise ConfigError(
                f"SecAgg+ could overflow: {num_nodes} nodes x weight up to {cap} x "
                f"quantization_range - 1 = {largest_sum} does not fit modulus_range "
                f"{params.modulus_range}: raise modulus_range (up to 2**64), or lower "
                "quantization_range or max_weight"
            )
        return cls(num_nodes, shares, threshold, cap)


def _check_shares(shares: int | float) -> None:
    if isinstance(shares, bool) or not isinstance(shares, (int, float)):
        raise ConfigError(f"num_shares must be an int or a fraction, got {shares!r}")
    if isinstance(shares, float):
        if not 0.0 < shares <= 1.0:
            raise ConfigError(
                f"num_shares as a float is a fraction of the round's nodes in (0, 1], got {shares}"
            )
        return
    if shares < 3 or shares % 2 == 0:
        raise ConfigError(
            f"num_shares must be an odd int of at least 3, got {shares}: a node keeps one "
            "share and gives one to each neighbour, and neighbours sit in pairs either side "
            f"of it on the round's ring (use {max(3, shares + 1)})"
        )


def _check_threshold(threshold: int | float, shares: int | float) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ConfigError(
            f"reconstruction_threshold must be an int or a fraction, got {threshold!r}"
        )
    if isinstance(threshold, float):
        if not 0.5 < threshold <= 1.0:
            raise ConfigError(
                "reconstruction_threshold as a float is a fraction of num_shares in (0.5, 1], "
                f"got {threshold}"
            )
        return
    if isinstance(shares, int):
        if threshold > shares:
            raise ConfigError(
                f"reconstruction_threshold={threshold} is more than num_shares={shares}: no "
                "secret could ever be rebuilt"
            )
        _check_majority(threshold, shares)


def _check_majority(threshold: int, shares: int) -> None:
    """Refuse a threshold that two disjoint groups of a node's holders could each reach."""
    if 2 * threshold <= shares:
        raise ConfigError(
            f"reconstruction_threshold={threshold} is too low for num_shares={shares}: it "
            f"must be more than half of them ({shares // 2 + 1} or more), or the server could "
            "rebuild both a node's self mask and its mask key from two disjoint groups of "
            "its neighbours and see its update"
        )


def _round_shares(shares: int | float, num_nodes: int) -> int:
    if isinstance(shares, int):
        return shares
    count = max(3, math.ceil(shares * num_nodes))
    return min(count + (count % 2 == 0), num_nodes) if count < num_nodes else num_nodes


def _round_threshold(threshold: int | float, shares: int) -> int:
    return threshold if isinstance(threshold, int) else max(2, math.ceil(threshold * shares))
