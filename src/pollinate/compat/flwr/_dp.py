"""Flower's differential-privacy wrappers on ``pollinate.privacy``: what both API paths share.

A Flower DP wrapper takes a FedAvg-style strategy and its DP settings; here it becomes the
wrapped strategy's own pollinate core with its aggregation replaced by
``chain(dp_fixed_clip(...) or dp_adaptive_clip(...), <the core's server optimizers>)``, so
the clipping, noise, Poisson sampling and accountant are pollinate's, unchanged.
``num_sampled_clients`` is Flower's divisor of the noise; pollinate divides by the expected
sample, ``fraction x available``, and warns once when the two differ
(docs/migrating-from-flower.md).
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from ...errors import ConfigError
from ...privacy import dp_adaptive_clip, dp_fixed_clip
from ...strategy import Aggregator, chain, weighted_average
from ...strategy import FedAvg as CoreFedAvg
from .common.logger import warn_once

__all__ = [
    "CLIENT_SIDE_ADAPTIVE",
    "adaptive_clip_piece",
    "check_sample_size",
    "fixed_clip_piece",
    "pollinate_options",
    "private_core",
]

CLIENT_SIDE_ADAPTIVE = (
    "pollinate does not clip adaptively on the nodes: use "
    "DifferentialPrivacyServerSideAdaptiveClipping (the server clips, the clip adapts), or "
    "DifferentialPrivacyClientSideFixedClipping with fixedclipping_mod (the nodes clip to a "
    "fixed norm)"
)
"""Why Flower's client-side adaptive clipping (wrapper and ``adaptiveclipping_mod``) is refused."""

_WEIGHTED_MEAN = type(weighted_average())


def _check_flower_args(where: str, noise_multiplier: object, num_sampled_clients: object) -> None:
    """One ConfigError for a noise multiplier or a sample size Flower's wrapper would refuse."""
    if isinstance(noise_multiplier, (int, float)) and noise_multiplier == 0:
        raise ConfigError(
            f"{where}: noise_multiplier=0 adds no noise, so the run would not be private: "
            "drop the wrapper to train without DP, or give a positive noise_multiplier"
        )
    if (
        isinstance(num_sampled_clients, bool)
        or not isinstance(num_sampled_clients, int)
        or num_sampled_clients < 1
    ):
        raise ConfigError(
            f"{where}: num_sampled_clients must be a whole number, 1 or more, got "
            f"{num_sampled_clients!r}"
        )


def fixed_clip_piece(
    where: str,
    noise_multiplier: float,
    clipping_norm: float,
    num_sampled_clients: int,
    clipped_on: Literal["server", "nodes"],
    **pollinate: Any,
) -> Aggregator:
    """``dp_fixed_clip`` for Flower's fixed-clipping wrappers (``pollinate``: delta, seed)."""
    _check_flower_args(where, noise_multiplier, num_sampled_clients)
    try:
        return dp_fixed_clip(clipping_norm, noise_multiplier, clipped_on=clipped_on, **pollinate)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def adaptive_clip_piece(
    where: str,
    noise_multiplier: float,
    num_sampled_clients: int,
    initial_clipping_norm: float,
    target_clipped_quantile: float,
    clip_norm_lr: float,
    clipped_count_stddev: float | None,
    **pollinate: Any,
) -> Aggregator:
    """``dp_adaptive_clip`` for Flower's server-side adaptive wrapper, by Flower's names."""
    _check_flower_args(where, noise_multiplier, num_sampled_clients)
    try:
        return dp_adaptive_clip(
            noise_multiplier,
            initial_clip_norm=initial_clipping_norm,
            target_quantile=target_clipped_quantile,
            clip_learning_rate=clip_norm_lr,
            count_noise_std=clipped_count_stddev,
            **pollinate,
        )
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def private_core(where: str, strategy: object, fedavg: type, piece: Aggregator) -> CoreFedAvg:
    """A copy of ``strategy``'s core whose aggregation is ``piece`` then its server optimizers.

    Only FedAvg-style strategies (instances of ``fedavg``, the API's own FedAvg) take the
    wrapper, as in Flower: a plain weighted mean, at most a server optimizer after it
    (FedAvg, FedProx, FedAvgM, FedAdam, FedYogi, FedAdagrad). A robust rule (median, Krum,
    trimmed mean) or a strategy with its own aggregation is not the mean the noise is
    scaled for: one error says so.
    """
    core = getattr(strategy, "core", None) if isinstance(strategy, fedavg) else None
    aggregation = getattr(core, "aggregation", None)
    if not (
        isinstance(core, CoreFedAvg)
        and type(core).aggregate_train is CoreFedAvg.aggregate_train
        and aggregation is not None
        and not aggregation.filters
        and isinstance(aggregation.aggregator, _WEIGHTED_MEAN)
    ):
        raise ConfigError(
            f"{where} wraps FedAvg-style strategies (FedAvg, FedProx, FedAvgM, FedAdam, "
            f"FedYogi, FedAdagrad), got {type(strategy).__name__}: its aggregation is not the "
            "mean the noise is scaled for; wrap one of those, or compose "
            "pollinate.strategy.FedAvg(aggregation=chain(dp_fixed_clip(...), ...)) natively"
        )
    private = copy.copy(core)
    private.aggregation = chain(piece, *aggregation.optimizers)
    private.aggregation.check(private.min_train_nodes)
    return private


def check_sample_size(where: str, fraction: float, num_available: int, expected: int) -> None:
    """Warn once a run when ``fraction x num_available`` is not Flower's ``num_sampled_clients``.

    pollinate scales the noise by the expected sample, so a ``num_sampled_clients`` that
    differs from it is not what the noise uses (Flower warns when replies differ from it).
    """
    if abs(fraction * num_available - expected) >= 1:
        warn_once(
            f"dp-sample-size-{where}",
            f"{where}: num_sampled_clients={expected} but pollinate samples each of the "
            f"{num_available} nodes with probability fraction={fraction:g}, "
            f"{fraction * num_available:g} expected, and scales the noise by that: set the "
            "wrapped strategy's fraction to num_sampled_clients / nodes to match",
        )


def pollinate_options(where: str, given: dict[str, Any]) -> dict[str, Any]:
    """The keywords of pollinate's own a wrapper takes beyond Flower's: ``delta`` and ``seed``."""
    unknown = sorted(set(given) - {"delta", "seed"})
    if unknown:
        raise ConfigError(
            f"{where} got unexpected arguments {unknown}: it takes Flower's, plus pollinate's "
            "delta= and seed="
        )
    return given
