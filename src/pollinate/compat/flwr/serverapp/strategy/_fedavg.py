"""Flower's message-API FedAvg and its relatives, each a pollinate strategy behind Flower's API.

``FedAvg(fraction_train=..., weighted_by_key=..., ...)`` builds ``pollinate.FedAvg`` with the
same settings and delegates every step to it (seeded sampling, reply checks, the streaming
weighted sum); the presets build pollinate's strategy of the same name (``FedAdam`` builds
``pollinate.strategy.FedAdam``), with Flower's defaults. Flower's metric aggregation
functions ``fn(list[RecordDict], weighting_key)`` get each reply's MetricRecord under
``"metrics"`` (its arrays are not held, so a round still keeps one model at a time).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, TypeAlias

from ..... import strategy as core
from .....errors import ConfigError
from .....message import Message as CoreMessage
from .....records import ArrayRecord as CoreArrayRecord
from .....records import MetricRecord as CoreMetricRecord
from .....records import RecordDict as CoreRecordDict
from .....strategy import FedAvgOptions
from ..._records import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MetricRecord,
    RecordDict,
    core_message,
    flower_message,
    flower_record,
)
from .._app import Grid, core_grid
from ._strategy import Strategy, current_round

__all__ = [
    "Bulyan",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedXgbBagging",
    "FedYogi",
    "Krum",
    "MultiKrum",
    "QFedAvg",
]

log = logging.getLogger("pollinate.compat.flwr")

FlowerMetricsAggrFn: TypeAlias = Callable[[list[RecordDict], str], "MetricRecord | Any"]

ARRAYS, METRICS, CONFIG = "arrays", "metrics", "config"
"""The keys pollinate's strategies read and write."""


class FedAvg(Strategy):
    """Flower's ``FedAvg``: ``pollinate.FedAvg`` with Flower's parameter names and defaults.

    ``weighted_by_key`` is pollinate's ``weight_key``; ``arrayrecord_key`` and
    ``configrecord_key`` name the records of the messages sent (replies may keep their one
    ArrayRecord and MetricRecord under any name, as in Flower). Sampling is pollinate's:
    seeded, so the same nodes are picked every run.
    """

    def __init__(
        self,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = ARRAYS,
        configrecord_key: str = CONFIG,
        train_metrics_aggr_fn: FlowerMetricsAggrFn | None = None,
        evaluate_metrics_aggr_fn: FlowerMetricsAggrFn | None = None,
    ) -> None:
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        # As in Flower: a fraction of 0 skips the phase, so it needs no replies either.
        self.min_train_nodes = 0 if fraction_train == 0.0 else min_train_nodes
        self.min_evaluate_nodes = 0 if fraction_evaluate == 0.0 else min_evaluate_nodes
        self.min_available_nodes = min_available_nodes
        self.weighted_by_key = weighted_by_key
        self.arrayrecord_key = arrayrecord_key
        self.configrecord_key = configrecord_key
        self.train_metrics_aggr_fn = train_metrics_aggr_fn
        self.evaluate_metrics_aggr_fn = evaluate_metrics_aggr_fn
        options: FedAvgOptions = {
            "fraction_train": fraction_train,
            "fraction_evaluate": fraction_evaluate,
            "min_train_nodes": self.min_train_nodes,
            "min_evaluate_nodes": self.min_evaluate_nodes,
            "min_available_nodes": min_available_nodes,
            "weight_key": weighted_by_key,
        }
        if train_metrics_aggr_fn is not None:
            options["train_metrics_aggr_fn"] = RecordDictAggregation(train_metrics_aggr_fn)
        if evaluate_metrics_aggr_fn is not None:
            options["evaluate_metrics_aggr_fn"] = RecordDictAggregation(evaluate_metrics_aggr_fn)
        self.core = self.make_core(options)

    def make_core(self, options: FedAvgOptions) -> core.FedAvg:
        """The pollinate strategy that does the work (presets build their own)."""
        return core.FedAvg(**options)

    def __repr__(self) -> str:
        settings = repr(self.core).partition("(")[2]
        return f"{type(self).__name__}({settings}"

    def summary(self) -> None:
        """Log the strategy's settings."""
        log.info("%r: weighted by %r", self, self.weighted_by_key)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The global model and config, for a seeded sample of ``fraction_train`` nodes."""
        if self.fraction_train == 0.0:
            return []
        state = current_round(self, arrays).state
        messages = self.core.configure_train(server_round, arrays, config, core_grid(grid), state)
        return [flower_message(self._keyed(m)) for m in messages]

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The global model and config, for a seeded sample of ``fraction_evaluate`` nodes."""
        messages = self.core.configure_evaluate(server_round, arrays, config, core_grid(grid))
        return [flower_message(self._keyed(m)) for m in messages]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The weighted average of the replies' models (pollinate's aggregation) and metrics."""
        replies = _valid(replies)
        first = next(replies, None)
        if first is None:
            if self._round is None or not self.core.aggregation.poisson_sampling:
                return None, None
            # A DP core takes a noise-only step when its Poisson sample drew no node.
            round_state, pending = self._round, _chained(None, ())
        else:
            first_reply = normalised(core_message(first))
            round_state = current_round(self, first_reply.content.arrays(ARRAYS))
            pending = _chained(first_reply, replies)
        mean, metrics, round_state.next_state = self.core.aggregate_train(
            server_round, round_state.arrays, pending, round_state.state
        )
        return _flower(mean), flower_record(metrics)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """The weighted average of the replies' metrics."""
        return flower_record(self.core.aggregate_evaluate(server_round, _as_core(_valid(replies))))

    def init_state(self, arrays: CoreArrayRecord) -> CoreArrayRecord:
        """The strategy state of pollinate's (server optimizer moments; empty for FedAvg)."""
        return self.core.init_state(arrays)

    def check_train_reply(self, reply: CoreMessage, arrays: CoreArrayRecord) -> str | None:
        """Set aside as pollinate does: errors, mismatched or non-finite arrays, bad weights."""
        return self.core.check_train_reply(normalised(reply), arrays)

    def check_evaluate_reply(self, reply: CoreMessage) -> str | None:
        """Set aside as pollinate does: errors, bad weights or metrics."""
        return self.core.check_evaluate_reply(normalised(reply))

    def streams(self, method: str) -> bool:
        """Stream replies to this class's own ``aggregate_*``; an override gets a list."""
        return getattr(type(self), method) is getattr(FedAvg, method)

    @property
    def minimum_replies(self) -> tuple[int, int]:
        """``min_train_nodes`` and ``min_evaluate_nodes``, as pollinate's FedAvg counts them."""
        return self.core.min_train_nodes, self.core.min_evaluate_nodes

    def min_train_replies(self, num_sent: int) -> int:
        """As pollinate's FedAvg: fewer when a DP core's Poisson sample drew fewer."""
        return self.core.min_train_replies(num_sent)

    def stop_reason(self, server_round: int, state: CoreArrayRecord) -> str | None:
        """As pollinate's FedAvg: a DP core's spent budget."""
        return self.core.stop_reason(server_round, state)

    def _keyed(self, message: CoreMessage) -> CoreMessage:
        """A message whose records are under ``arrayrecord_key`` / ``configrecord_key``."""
        if (self.arrayrecord_key, self.configrecord_key) == (ARRAYS, CONFIG):
            return message
        content = CoreRecordDict(
            {
                self.arrayrecord_key: message.content[ARRAYS],
                self.configrecord_key: message.content[CONFIG],
            }
        )
        return CoreMessage(message.metadata, content)


class RecordDictAggregation:
    """pollinate's ``(list[MetricRecord], key)`` aggregation calling Flower's RecordDict one."""

    __slots__ = ("fn",)

    def __init__(self, fn: FlowerMetricsAggrFn) -> None:
        self.fn = fn

    def __call__(self, records: Sequence[CoreMetricRecord], weight_key: str) -> Any:
        return self.fn([RecordDict({METRICS: r}) for r in records], weight_key)


def normalised(reply: CoreMessage) -> CoreMessage:
    """``reply`` with its one ArrayRecord and MetricRecord under pollinate's names.

    Flower aggregates a reply's records whatever their names; pollinate reads ``arrays``
    and ``metrics``. The records are shared, not copied.
    """
    content = reply.content
    if reply.error is not None or (ARRAYS in content and METRICS in content):
        return reply
    renamed: dict[str, Any] = dict(content.items())
    arrays, metrics = content.array_records, content.metric_records
    if ARRAYS not in content and len(arrays) == 1:
        renamed[ARRAYS] = next(iter(arrays.values()))
    if METRICS not in content and len(metrics) == 1:
        renamed[METRICS] = next(iter(metrics.values()))
    return CoreMessage(reply.metadata, CoreRecordDict(renamed))


def _valid(replies: Iterable[Message]) -> Iterator[Message]:
    """The replies that carry content (error replies are logged and left out, as Flower does)."""
    for reply in replies:
        if reply.has_error():
            log.info("left out node %d's error reply", reply.metadata.src_node_id)
            continue
        yield reply


def _as_core(replies: Iterable[Message]) -> Iterator[CoreMessage]:
    for reply in replies:
        yield normalised(core_message(reply))


def _chained(first: CoreMessage | None, rest: Iterable[Message]) -> Iterator[CoreMessage]:
    if first is not None:
        yield first
    yield from _as_core(rest)


def _flower(arrays: CoreArrayRecord | None) -> ArrayRecord | None:
    return None if arrays is None else flower_record(arrays)


class FedProx(FedAvg):
    """Flower's ``FedProx``: ``pollinate.strategy.FedProx``, ``proximal-mu`` in each config."""

    def __init__(self, *args: Any, proximal_mu: float = 0.0, **options: Any) -> None:
        self.proximal_mu = proximal_mu
        super().__init__(*args, **options)

    def make_core(self, options: FedAvgOptions) -> core.FedAvg:
        return core.FedProx(self.proximal_mu, **options)


class FedAvgM(FedAvg):
    """Flower's ``FedAvgM``: ``pollinate.strategy.FedAvgM`` (server momentum)."""

    def __init__(
        self,
        *args: Any,
        server_learning_rate: float = 1.0,
        server_momentum: float = 0.0,
        **options: Any,
    ) -> None:
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        super().__init__(*args, **options)

    def make_core(self, options: FedAvgOptions) -> core.FedAvg:
        return core.FedAvgM(
            server_learning_rate=self.server_learning_rate,
            server_momentum=self.server_momentum,
            **options,
        )


class _FedOpt(FedAvg):
    """Flower's adaptive strategies: the server optimizer is pollinate's of the same name.

    ``eta_l`` (the nodes' learning rate) is accepted and kept, as Flower does: it is not
    sent, so a ClientApp reads its learning rate from its own config.
    """

    core_class: ClassVar[Callable[..., core.FedAvg]] = core.FedAdam
    defaults: ClassVar[dict[str, float]] = {}

    def __init__(self, *args: Any, **options: Any) -> None:
        settings = {**self.defaults, **{k: options.pop(k) for k in self.defaults if k in options}}
        self.eta_l = settings.pop("eta_l")
        self.settings = settings
        for name, value in settings.items():
            setattr(self, name, value)
        super().__init__(*args, **options)

    def make_core(self, options: FedAvgOptions) -> core.FedAvg:
        return type(self).core_class(**self.settings, **options)


class FedAdam(_FedOpt):
    """Flower's ``FedAdam``: ``pollinate.strategy.FedAdam`` with Flower's defaults."""

    core_class = core.FedAdam
    defaults: ClassVar[dict[str, float]] = {
        "eta": 1e-1,
        "eta_l": 1e-1,
        "beta_1": 0.9,
        "beta_2": 0.99,
        "tau": 1e-3,
    }


class FedYogi(_FedOpt):
    """Flower's ``FedYogi``: ``pollinate.strategy.FedYogi`` with Flower's defaults."""

    core_class = core.FedYogi
    defaults: ClassVar[dict[str, float]] = {
        "eta": 1e-2,
        "eta_l": 0.0316,
        "beta_1": 0.9,
        "beta_2": 0.99,
        "tau": 1e-3,
    }


class FedAdagrad(_FedOpt):
    """Flower's ``FedAdagrad``: ``pollinate.strategy.FedAdagrad`` with Flower's defaults."""

    core_class = core.FedAdagrad
    defaults: ClassVar[dict[str, float]] = {"eta": 1e-1, "eta_l": 1e-1, "tau": 1e-3}


class FedMedian(FedAvg):
    """Flower's ``FedMedian``: ``pollinate.strategy.FedMedian`` (the element-wise median)."""

    def make_core(self, options: FedAvgOptions) -> core.FedAvg:
        return core.FedMedian(**options)


class FedTrimmedAvg(FedAvg):
    """Flower's ``FedTrimmedAvg``: ``pollinate.strategy.FedTrimmedAvg``."""

    def __init__(self, *args: Any, beta: float = 0.2, **options: Any) -> None:
        self.beta = beta
        super().__init__(*args, **options)

    def make_core(self, options: FedAvgOptions) -> core.FedAvg:
        return core.FedTrimmedAvg(beta=self.beta, **options)


class Krum(FedAvg):
    """Flower's ``Krum``: ``pollinate.strategy.Krum``."""

    def __init__(self, *args: Any, num_malicious_nodes: int = 0, **options: Any) -> None:
        self.num_malicious_nodes = num_malicious_nodes
        super().__init__(*args, **options)

    def make_core(self, options: FedAvgOptions) -> core.FedAvg:
        return core.Krum(num_malicious_nodes=self.num_malicious_nodes, **options)


class MultiKrum(FedAvg):
    """Flower's ``MultiKrum``: ``pollinate.strategy.MultiKrum`` (``num_nodes_to_select`` kept)."""

    def __init__(
        self,
        *args: Any,
        num_malicious_nodes: int = 0,
        num_nodes_to_select: int = 1,
        **options: Any,
    ) -> None:
        self.num_malicious_nodes = num_malicious_nodes
        self.num_nodes_to_select = num_nodes_to_select
        super().__init__(*args, **options)

    def make_core(self, options: FedAvgOptions) -> core.FedAvg:
        return core.MultiKrum(
            num_malicious_nodes=self.num_malicious_nodes,
            num_nodes_to_keep=self.num_nodes_to_select,
            **options,
        )


class Bulyan(FedAvg):
    """Flower's ``Bulyan``: ``pollinate.strategy.Bulyan`` (its own selection rule, Krum's)."""

    def __init__(
        self,
        *args: Any,
        num_malicious_nodes: int = 0,
        selection_rule: object | None = None,
        **options: Any,
    ) -> None:
        if selection_rule is not None:
            raise ConfigError(
                "Bulyan(selection_rule=...) is not supported: pollinate's Bulyan selects with "
                "Krum; compose another rule with pollinate.strategy.chain(...)"
            )
        self.num_malicious_nodes = num_malicious_nodes
        super().__init__(*args, **options)

    def make_core(self, options: FedAvgOptions) -> core.FedAvg:
        return core.Bulyan(num_malicious_nodes=self.num_malicious_nodes, **options)


class QFedAvg(FedAvg):
    """Flower's ``QFedAvg``: ``pollinate.strategy.QFedAvg``, its names mapped.

    ``client_learning_rate`` is pollinate's ``qffl_learning_rate``, ``train_loss_key`` its
    ``loss_key``.
    """

    def __init__(
        self,
        client_learning_rate: float,
        q: float = 0.1,
        train_loss_key: str = "train_loss",
        *args: Any,
        **options: Any,
    ) -> None:
        self.client_learning_rate = client_learning_rate
        self.q = q
        self.train_loss_key = train_loss_key
        super().__init__(*args, **options)

    def make_core(self, options: FedAvgOptions) -> core.FedAvg:
        return core.QFedAvg(
            q=self.q,
            qffl_learning_rate=self.client_learning_rate,
            loss_key=self.train_loss_key,
            **options,
        )


class FedXgbBagging(FedAvg):
    """Flower's ``FedXgbBagging``: ``pollinate.strategy.FedXgbBagging`` appends each reply's trees.

    Flower keeps the booster's JSON bytes in an array named ``"0"``, pollinate in one named
    ``"model"``: the records are renamed (their arrays shared) on the way to and from
    pollinate's strategy, so Flower's ClientApp reads ``msg.content["arrays"]["0"]`` as ever.
    """

    def make_core(self, options: FedAvgOptions) -> core.FedAvg:
        return core.FedXgbBagging(**options)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's train messages, the global booster under Flower's array name."""
        if self.fraction_train == 0.0:
            return []
        state = current_round(self, arrays).state
        messages = self.core.configure_train(
            server_round, _one_array(arrays, XGB_MODEL), config, core_grid(grid), state
        )
        return [flower_message(self._keyed(_model_named(m, FLOWER_MODEL))) for m in messages]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The global booster with each valid reply's trees appended, and the metrics."""
        current = current_round(self, core.xgb_record())
        model, metrics, current.next_state = self.core.aggregate_train(
            server_round,
            _one_array(current.arrays, XGB_MODEL),
            (_model_named(r, XGB_MODEL) for r in _as_core(_valid(replies))),
            current.state,
        )
        return _flower(None if model is None else _one_array(model, FLOWER_MODEL)), flower_record(
            metrics
        )

    def check_train_reply(self, reply: CoreMessage, arrays: CoreArrayRecord) -> str | None:
        """Set aside what pollinate does: a model that is no gbtree JSON like the global one."""
        named = _model_named(normalised(reply), XGB_MODEL)
        return self.core.check_train_reply(named, _one_array(arrays, XGB_MODEL))

    def streams(self, method: str) -> bool:
        """Stream replies to this class's own ``aggregate_*``; an override gets a list."""
        return getattr(type(self), method) is getattr(FedXgbBagging, method)


XGB_MODEL, FLOWER_MODEL = "model", "0"
"""The name of the booster's array: pollinate's, and Flower's (its first array's)."""


def _one_array(record: CoreArrayRecord, name: str) -> CoreArrayRecord:
    """``record``'s one array under ``name`` (shared, not copied); any other record as is."""
    if len(record) != 1:
        return record
    return CoreArrayRecord({name: next(iter(record.values()))})


def _model_named(message: CoreMessage, name: str) -> CoreMessage:
    """``message`` with the array of its ``arrays`` record under ``name``."""
    record = message.content.get(ARRAYS) if message.error is None else None
    if not isinstance(record, CoreArrayRecord):
        return message
    content = CoreRecordDict({**dict(message.content.items()), ARRAYS: _one_array(record, name)})
    return CoreMessage(message.metadata, content)
