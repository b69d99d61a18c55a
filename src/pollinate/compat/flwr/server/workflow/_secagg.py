"""Flower's ``SecAggPlusWorkflow`` and ``SecAggWorkflow``: settings for pollinate's SecAgg+.

They hold Flower's parameters, mapped onto pollinate's SecAgg+ (docs/secure-aggregation.md);
``DefaultWorkflow`` hands the protocol to the classic strategy, whose rounds then run it.
Flower's stages (``setup_stage``...) are pollinate's own and cannot be overridden.
"""

from __future__ import annotations

from typing import Any

from .....errors import ConfigError
from .....message import Message
from .....privacy import SecAggPlus
from .....records import ArrayRecord
from .....server import Grid
from .....strategy import FedAvg as CoreFedAvg
from .....strategy import SecureAggregation, SecureRound
from .....strategy import Strategy as CoreStrategy
from ..._words import flower_words
from ...common.logger import warn_once
from ..strategy import FedAvg
from ..strategy.strategy import Strategy as FlowerStrategy

__all__ = ["SecAggPlusWorkflow", "SecAggWorkflow"]

WEIGHT_KEY = "num-examples"
"""Where the classic client adapter puts ``num_examples``: SecAgg+ weighs each update by it."""

_FLOWER_STAGES = (
    "__call__",
    "setup_stage",
    "share_keys_stage",
    "collect_masked_vectors_stage",
    "unmask_stage",
)


class SecAggPlusWorkflow:
    """Flower's SecAgg+ fit workflow: ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))``.

    Flower's parameters and defaults, except ``modulus_range`` (2**64; see below):

    Args:
        num_shares: shares per secret (an int above 2; an even one gets one more, as in
            Flower), or a float fraction of the round's sampled clients (1 or 1.0: all).
        reconstruction_threshold: shares that rebuild a secret, an int or a float fraction
            of ``num_shares`` (1: all). pollinate requires more than half of the shares.
        max_weight: the largest ``num_examples`` a client may report (whole numbers).
        clipping_range: each coordinate of a client's update is clipped to ``[-c, c]``.
        quantization_range: levels the clipped range is rounded to.
        modulus_range: a power of two up to 2**64 that sums wrap around. pollinate masks
            ``num_examples x`` the quantized update, so it needs ``clients x max_weight x
            quantization_range`` below it: 2**64 by default (Flower's 2**32 would overflow).
        timeout: seconds to wait for each stage (None: the round's ``round_timeout``).
        seed: pollinate's: seeds the neighbour graph (None: OS randomness).
    """

    def __init__(
        self,
        num_shares: int | float,
        reconstruction_threshold: int | float,
        *,
        max_weight: float = 1000.0,
        clipping_range: float = 8.0,
        quantization_range: int = 4194304,
        modulus_range: int = 2**64,
        timeout: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.num_shares = num_shares
        self.reconstruction_threshold = reconstruction_threshold
        self.max_weight = max_weight
        self.clipping_range = clipping_range
        self.quantization_range = quantization_range
        self.modulus_range = modulus_range
        self.timeout = timeout
        self.seed = seed
        where = type(self).__name__
        try:
            self.protocol = SecAggPlus(
                _shares(where, num_shares),
                _threshold(where, reconstruction_threshold),
                max_weight=max_weight,
                clipping_range=clipping_range,
                quantization_range=quantization_range,
                modulus_range=modulus_range,
                timeout=timeout,
                seed=seed,
            )
            self.protocol.for_strategy(WEIGHT_KEY, True, _smallest_round(self.protocol))
        except ConfigError as err:
            raise ConfigError(f"{where}: {flower_words(str(err))}") from None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse a subclass that overrides Flower's stages: pollinate runs them itself."""
        super().__init_subclass__(**kwargs)
        overridden = [name for name in _FLOWER_STAGES if name in vars(cls)]
        if overridden:
            raise ConfigError(
                f"{cls.__name__} overrides {', '.join(overridden)}: pollinate runs SecAgg+'s "
                "stages itself (pollinate.privacy.SecAggPlus), so they cannot be overridden; "
                "use SecAggPlusWorkflow as it is (pollinate logs each stage's dropouts)"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.protocol!r})"

    def __call__(self, grid: object, context: object) -> None:
        """Not run on its own: pollinate runs SecAgg+ inside the strategy's rounds."""
        raise ConfigError(
            f"{type(self).__name__} runs inside the strategy's rounds on pollinate: pass it "
            "to DefaultWorkflow(fit_workflow=...) and call the DefaultWorkflow"
        )

    def for_strategy(
        self, strategy: CoreStrategy, num_rounds: int | None = None
    ) -> SecureAggregation:
        """The protocol bound to ``strategy`` (a classic one); ConfigError if it cannot run it.

        With a DP strategy (Poisson-sampled rounds) and ``num_rounds``, the first round
        first checks that none of the run's rounds likely draws too few clients.
        """
        where = type(self).__name__
        if not isinstance(strategy, FlowerStrategy):
            raise ConfigError(
                f"{where} runs a flwr.server.strategy strategy; a native pollinate strategy "
                "takes it as FedAvg(secure_aggregation=pollinate.privacy.SecAggPlus(...))"
            )
        core = _core_of(strategy)
        weighted = True
        if core is not None:
            _check_core(where, type(strategy).__name__, core)
            weighted = not core.aggregation.unweighted
        try:
            # the strategy's own minimum, as native FedAvg checks it: rounds of it must run
            least = _smallest_round(self.protocol) if core is None else core.min_train_nodes
            bound = self.protocol.for_strategy(WEIGHT_KEY, weighted, least)
        except ConfigError as err:
            raise ConfigError(f"{where}: {flower_words(str(err))}") from None
        if core is None or num_rounds is None or not core.aggregation.poisson_sampling:
            return bound
        return _RunChecked(bound, core.fraction_train, num_rounds)


class SecAggWorkflow(SecAggPlusWorkflow):
    """Flower's SecAgg workflow: SecAgg+ where every sampled client holds a share of each secret.

    ``SecAggPlusWorkflow(num_shares=1.0, ...)``, as in Flower: the complete graph.
    """

    def __init__(
        self,
        reconstruction_threshold: int | float,
        *,
        max_weight: float = 1000.0,
        clipping_range: float = 8.0,
        quantization_range: int = 4194304,
        modulus_range: int = 2**64,
        timeout: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            1.0,
            reconstruction_threshold,
            max_weight=max_weight,
            clipping_range=clipping_range,
            quantization_range=quantization_range,
            modulus_range=modulus_range,
            timeout=timeout,
            seed=seed,
        )


class _RunChecked(SecureAggregation):
    """A protocol whose first round checks the run's Poisson samples (``check_sampling``)."""

    def __init__(self, protocol: SecureAggregation, rate: float, num_rounds: int) -> None:
        self.protocol, self.rate, self.num_rounds = protocol, rate, num_rounds
        self.weighted = protocol.weighted
        self.checked = False

    def for_strategy(
        self, weight_key: str, weighted: bool, min_train_nodes: int
    ) -> SecureAggregation:
        bound = self.protocol.for_strategy(weight_key, weighted, min_train_nodes)
        return _RunChecked(bound, self.rate, self.num_rounds)

    def train_round(
        self,
        grid: Grid,
        server_round: int,
        messages: list[Message],
        arrays: ArrayRecord,
        timeout_s: float | None,
    ) -> SecureRound:
        if not self.checked:  # the population is known once the first round sampled it
            self.protocol.check_sampling(len(grid.node_ids()), self.rate, self.num_rounds)
            self.checked = True
        return self.protocol.train_round(grid, server_round, messages, arrays, timeout_s)


def _shares(where: str, shares: int | float) -> int | float:
    """Flower's ``num_shares`` as pollinate's: 1 is every client, an even int gets one more."""
    if isinstance(shares, bool) or not isinstance(shares, (int, float)):
        raise ConfigError(f"{where}: num_shares must be an int or a float, got {shares!r}")
    if isinstance(shares, float):
        return min(shares, 1.0) if shares > 0 else shares  # above 1: every client, as in Flower
    if shares == 1:
        return 1.0
    if shares <= 2:
        raise ConfigError(f"{where}: num_shares as an int must be more than 2, got {shares}")
    if shares % 2 == 0:
        warn_once(
            f"secagg-even-shares-{shares}",
            f"{where}: num_shares={shares} is even; SecAgg+ needs an odd number (a client "
            f"and pairs of neighbours either side), so {shares + 1} is used, as Flower does",
        )
        return shares + 1
    return shares


def _threshold(where: str, threshold: int | float) -> int | float:
    """Flower's ``reconstruction_threshold`` as pollinate's: an int 1 is every share."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ConfigError(
            f"{where}: reconstruction_threshold must be an int or a float, got {threshold!r}"
        )
    return 1.0 if threshold == 1 and isinstance(threshold, int) else threshold


def _smallest_round(protocol: SecAggPlus) -> int:
    """The fewest clients a round could sample with these shares (checked again each round)."""
    shares = protocol.params.num_shares
    return shares if isinstance(shares, int) else 3


def _core_of(strategy: FlowerStrategy) -> CoreFedAvg | None:
    """The pollinate FedAvg that aggregates for a built-in classic strategy (or a DP wrapper's)."""
    inner = getattr(strategy, "strategy", strategy)  # a DP wrapper runs a copy of its strategy
    core = getattr(inner, "core", None) if isinstance(inner, FedAvg) else None
    return core if isinstance(core, CoreFedAvg) else None


def _check_core(where: str, name: str, core: CoreFedAvg) -> None:
    """Refuse a strategy that needs each update: SecAgg+ gives the server only their sum."""
    needs_each = [repr(piece) for piece in core.aggregation.needs_each_update()]
    if type(core).aggregate_train is not CoreFedAvg.aggregate_train:
        needs_each.append(type(core).__name__)
    if needs_each:
        raise ConfigError(
            f"{where}: {name} needs each client's update ({', '.join(needs_each)}), but "
            "SecAgg+ gives the server only their sum: use FedAvg, FedProx, FedAvgM, FedAdam, "
            "FedYogi or FedAdagrad (Flower would run it on copies of the mean)"
        )
