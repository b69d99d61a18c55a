"""FedXgbBagging: federated XGBoost that pools the trees every node grows (bagging).

The bagging scheme of Flower's XGBoost examples, from "Flower: A Friendly Federated
Learning Research Framework" (Beutel et al., 2020), https://arxiv.org/abs/2007.14390, on
"XGBoost: A Scalable Tree Boosting System" (Chen & Guestrin, KDD 2016),
https://arxiv.org/abs/1603.02754.

A model travels as XGBoost's JSON model bytes: an ArrayRecord with one uint8 array named
``"model"`` (empty before the first round: ``xgb_record()``). Each sampled node loads the
global booster (``xgb_booster``), boosts a few more rounds on its own data and replies
with only its new trees (``xgb_new_trees``); the server appends every node's new trees to
the global booster, in send order. The first round's model is the first reply's, so its
``base_score`` stands: set ``base_score`` in the nodes' params to make them agree. Needs
XGBoost >= 2.0 (whose JSON has ``iteration_indptr``) and the ``gbtree`` booster; the
server edits the JSON and never imports xgboost. A node's train handler::

    @app.train()
    def train(msg, context):
        booster = xgb_booster(msg.content.arrays(), params)  # None in the first round
        start = booster.num_boosted_rounds() if booster is not None else 0
        booster = xgboost.train(params, dtrain, num_boost_round=local_rounds, xgb_model=booster)
        metrics = MetricRecord({"num-examples": dtrain.num_row()})
        return msg.reply(RecordDict({"arrays": xgb_new_trees(booster, start), "metrics": metrics}))

Parameters: FedAvg's options (``weight_key`` weights the metrics only).
"""

from __future__ import annotations

import importlib
import itertools
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from ..message import Message
from ..records import ArrayRecord, ConfigRecord, MetricRecord
from ..server import Grid
from ._base import streams_replies
from ._fedavg import FedAvg, refuse_aggregation
from ._validate import ARRAYS_KEY, METRICS_KEY, check_evaluate_reply

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._fedavg import FedAvgOptions

__all__ = ["MODEL_KEY", "FedXgbBagging", "xgb_booster", "xgb_new_trees", "xgb_record"]

MODEL_KEY = "model"
"""The name of the uint8 array holding the model's JSON bytes."""

_Json = dict[str, Any]
_STALE_ATTRIBUTES = ("best_iteration", "best_score", "best_ntree_limit")
"""Early-stopping attributes that no longer describe a model once trees are added."""


class FedXgbBagging(FedAvg):
    """Federated XGBoost: every node's new trees are appended to the global booster.

    Start it with ``initial_arrays=xgb_record()`` (no model yet). A reply must carry the
    JSON of a gbtree model under ``"arrays"`` whose features, classes, targets and
    objective match the global model's; any other is set aside.

    Args:
        **options: FedAvg's keyword arguments.
    """

    def __init__(self, **options: Unpack[FedAvgOptions]) -> None:
        refuse_aggregation("FedXgbBagging", options)
        super().__init__(**options)
        self._layout: tuple[object, ...] | None = None
        self._checked: tuple[str, _Json] | None = None

    def configure_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        config: ConfigRecord,
        grid: Grid,
        state: ArrayRecord,
    ) -> list[Message]:
        """FedAvg's train messages; the global model's layout is what replies must match."""
        model = _parse_record(arrays)
        if isinstance(model, str):
            raise ConfigError(f"FedXgbBagging: the global model is not usable: {model}")
        self._layout = None if model is None else _layout(model)
        return super().configure_train(server_round, arrays, config, grid, state)

    def check_train_reply(self, reply: Message, arrays: ArrayRecord) -> str | None:
        """Set aside errors, bad metrics, and models that are not a matching gbtree JSON."""
        reason = check_evaluate_reply(reply, self.weight_key, self.max_weight)
        if reason is not None:
            return reason
        record = reply.content.get(ARRAYS_KEY)
        if not isinstance(record, ArrayRecord):
            return f"reply has no ArrayRecord under {ARRAYS_KEY!r}"
        model = _parse_record(record)
        if model is None:
            return "reply model is empty: send the new trees with xgb_new_trees(booster, start)"
        if isinstance(model, str):
            return f"reply model: {model}"
        layout = _layout(model)
        if self._layout is None:
            self._layout = layout  # the first round: the first good reply sets the layout
        elif layout != self._layout:
            return f"reply model {_describe(layout)} does not match the global model's " + (
                _describe(self._layout)
            )
        self._checked = (reply.metadata.message_id, model)
        return None

    @streams_replies
    def aggregate_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        replies: Iterable[Message],
        state: ArrayRecord,
    ) -> tuple[ArrayRecord | None, MetricRecord, ArrayRecord]:
        """The global model with each reply's trees appended (None if there was no reply).

        Bagging keeps no state: ``state`` (empty) goes back as it came.
        """
        merged = _parse_record(arrays)
        if isinstance(merged, str):
            raise ConfigError(f"FedXgbBagging: the global model is not usable: {merged}")
        metrics: list[MetricRecord] = []
        for reply in replies:
            metrics.append(reply.content.metrics(METRICS_KEY))
            local = self._parsed(reply)
            merged = local if merged is None else _append_trees(merged, local)
            del reply  # hold no reply while the next one comes in
        aggregated = self.train_metrics(metrics)
        if not metrics or merged is None:
            return None, aggregated, state
        raw = json.dumps(merged, separators=(",", ":")).encode()
        return xgb_record(raw), aggregated, state

    def _parsed(self, reply: Message) -> _Json:
        """The reply's model, parsed once: by its check, just before it is aggregated."""
        if self._checked is not None and self._checked[0] == reply.metadata.message_id:
            model = self._checked[1]
            self._checked = None
            return model
        parsed = _parse_record(reply.content.arrays(ARRAYS_KEY))
        if not isinstance(parsed, dict):
            raise ConfigError(f"FedXgbBagging: a reply model is not usable: {parsed}")
        return parsed


def _parse_record(record: ArrayRecord) -> _Json | str | None:
    """The model JSON in ``record`` (None if empty), or why it cannot be used."""
    if list(record) != [MODEL_KEY]:
        return f"expected one array named {MODEL_KEY!r}, got {list(record)}"
    array = record[MODEL_KEY]
    if array.dtype != np.uint8 or len(array.shape) != 1:
        return f"{MODEL_KEY!r} must be a 1-d uint8 array, got {array.dtype} {array.shape}"
    if array.shape[0] == 0:
        return None
    try:
        model = json.loads(array.numpy().tobytes())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not XGBoost JSON: save it with booster.save_raw('json') (xgb_record does)"
    return _check_model(model)


def _check_model(model: object) -> _Json | str:
    """``model`` if it is a gbtree model JSON whose tree counts agree, else why not."""
    try:
        booster = model["learner"]["gradient_booster"]  # type: ignore[index]
        if booster["name"] != "gbtree":
            return f"only gbtree boosters can be bagged, got {booster['name']!r}"
        gbtree = booster["model"]
        trees, info, indptr = gbtree["trees"], gbtree["tree_info"], gbtree["iteration_indptr"]
        num_trees = int(gbtree["gbtree_model_param"]["num_trees"])
        _layout(model)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return "not an XGBoost >= 2.0 gbtree model JSON (learner.gradient_booster.model)"
    counts_agree = len(trees) == len(info) == num_trees and indptr and indptr[-1] == num_trees
    if not counts_agree or indptr[0] != 0 or any(b < a for a, b in itertools.pairwise(indptr)):
        return (
            f"inconsistent tree counts: {len(trees)} trees, {len(info)} tree_info, "
            f"num_trees={num_trees}, iteration_indptr ending {indptr[-1:]}"
        )
    return model  # type: ignore[return-value]


def _layout(model: _Json) -> tuple[object, ...]:
    """What two models must share for their trees to be pooled."""
    learner = model["learner"]
    params = learner["learner_model_param"]
    return (
        params["num_feature"],
        params["num_class"],
        params.get("num_target", "1"),
        learner["objective"]["name"],
        learner["gradient_booster"]["model"]["gbtree_model_param"]["num_parallel_tree"],
    )


def _describe(layout: tuple[object, ...]) -> str:
    names = ("num_feature", "num_class", "num_target", "objective", "num_parallel_tree")
    return "(" + ", ".join(f"{n}={v}" for n, v in zip(names, layout, strict=True)) + ")"


def _append_trees(merged: _Json, local: _Json) -> _Json:
    """``merged`` with ``local``'s trees, iterations and tree_info appended (in place)."""
    into = merged["learner"]["gradient_booster"]["model"]
    new = local["learner"]["gradient_booster"]["model"]
    offset, end = len(into["trees"]), into["iteration_indptr"][-1]
    for position, tree in enumerate(new["trees"]):
        into["trees"].append({**tree, "id": offset + position})
    into["tree_info"].extend(new["tree_info"])
    into["iteration_indptr"].extend(end + p for p in new["iteration_indptr"][1:])
    into["gbtree_model_param"]["num_trees"] = str(len(into["trees"]))
    attributes = merged["learner"].get("attributes", {})
    for stale in _STALE_ATTRIBUTES:
        attributes.pop(stale, None)
    return merged


def xgb_record(model: Any = b"") -> ArrayRecord:
    """The ArrayRecord carrying ``model``: a Booster or its JSON bytes (empty: no model)."""
    raw = model if isinstance(model, (bytes, bytearray)) else model.save_raw("json")
    return ArrayRecord({MODEL_KEY: np.frombuffer(bytes(raw), np.uint8)})


def xgb_booster(record: ArrayRecord, params: Mapping[str, Any] | None = None) -> Any:
    """The ``xgboost.Booster`` in ``record`` (None if it holds no model yet)."""
    model = _parse_record(record)
    if isinstance(model, str):
        raise ConfigError(f"xgb_booster: {model}")
    if model is None:
        return None
    xgb = importlib.import_module("xgboost")
    booster = xgb.Booster(params=dict(params or {}))
    booster.load_model(bytearray(record[MODEL_KEY].numpy().tobytes()))
    return booster


def xgb_new_trees(booster: Any, num_global_rounds: int) -> ArrayRecord:
    """The record of ``booster``'s rounds after the first ``num_global_rounds``: the reply.

    ``num_global_rounds`` is the received model's ``num_boosted_rounds()`` (0 without one).
    """
    total = int(booster.num_boosted_rounds())
    if not 0 <= num_global_rounds < total:
        raise ConfigError(
            f"num_global_rounds must be between 0 and {total - 1} (the booster has {total} "
            f"rounds), got {num_global_rounds}"
        )
    return xgb_record(booster[num_global_rounds:total] if num_global_rounds else booster)
