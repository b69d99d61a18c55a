"""NumPyClient: the classic ``get_parameters`` / ``fit`` / ``evaluate`` client style.

The adapter turns a ``client_fn(context) -> NumPyClient`` into ClientApp handlers. Messages
it understands (and that FedAvg and friends send):

- ``train``: content ``arrays`` (ArrayRecord) and ``config`` (ConfigRecord); the reply has
  ``arrays`` and ``metrics`` with ``num-examples``;
- ``evaluate``: the same input; the reply has ``metrics`` with ``loss`` and ``num-examples``;
- ``query.get-parameters``: content ``config``; the reply has ``arrays``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from ..context import Context
from ..errors import AppError
from ..message import Message
from ..records import ArrayRecord, ConfigRecord, ConfigValue, MetricRecord, RecordDict

if TYPE_CHECKING:
    from ._handler import Handler

__all__ = ["ClientFn", "NumPyClient"]

NDArrays: TypeAlias = list[np.ndarray[Any, Any]]
Config: TypeAlias = dict[str, ConfigValue]
Metrics: TypeAlias = dict[str, Any]

GET_PARAMETERS = "query.get-parameters"


class NumPyClient:
    """Subclass and override ``fit`` and ``evaluate`` (and ``get_parameters``) with numpy arrays.

    ``self.context`` is the node's Context while a method runs.
    """

    context: Context

    def get_parameters(self, config: Config) -> NDArrays:
        """The local model's weights, in order."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_parameters")

    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, Metrics]:
        """Train on local data from ``parameters``: (new weights, num examples, metrics)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement fit")

    def evaluate(self, parameters: NDArrays, config: Config) -> tuple[float, int, Metrics]:
        """Evaluate ``parameters`` on local data: (loss, num examples, metrics)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement evaluate")


ClientFn: TypeAlias = Callable[[Context], NumPyClient]


def numpy_client_handlers(client_fn: ClientFn) -> dict[str, Handler]:
    """Handlers for train, evaluate and get-parameters that call a fresh client each time."""
    return {
        "train": _Fit(client_fn),
        "evaluate": _Evaluate(client_fn),
        GET_PARAMETERS: _GetParameters(client_fn),
    }


class _ClientMethod:
    """A handler that builds the client for the node, then calls one of its methods.

    Handlers are objects rather than closures so that a ClientApp built from a module-level
    ``client_fn`` can be shipped to worker processes.
    """

    __slots__ = ("client_fn",)

    def __init__(self, client_fn: ClientFn) -> None:
        self.client_fn = client_fn

    def client(self, context: Context) -> NumPyClient:
        client = self.client_fn(context)
        if not isinstance(client, NumPyClient):
            raise AppError(
                f"client_fn must return a NumPyClient, got {type(client).__name__}; "
                "subclass pollinate.NumPyClient"
            )
        client.context = context
        return client


class _Fit(_ClientMethod):
    __slots__ = ()

    def __call__(self, msg: Message, context: Context) -> Message:
        names, arrays, config = _inputs(msg)
        new_arrays, num_examples, metrics = _unpack("fit", self.client(context).fit(arrays, config))
        metrics_record = _metrics("fit", metrics, num_examples)
        content = {"arrays": _named(names, new_arrays), "metrics": metrics_record}
        return msg.reply(RecordDict(content))


class _Evaluate(_ClientMethod):
    __slots__ = ()

    def __call__(self, msg: Message, context: Context) -> Message:
        _, arrays, config = _inputs(msg)
        result = self.client(context).evaluate(arrays, config)
        loss, num_examples, metrics = _unpack("evaluate", result)
        if not isinstance(loss, (int, float, np.number)) or not math.isfinite(float(loss)):
            raise AppError(f"evaluate returned loss {loss!r}; it must be a finite number")
        metrics_record = _metrics("evaluate", metrics, num_examples)
        metrics_record["loss"] = float(loss)
        return msg.reply(RecordDict({"metrics": metrics_record}))


class _GetParameters(_ClientMethod):
    __slots__ = ()

    def __call__(self, msg: Message, context: Context) -> Message:
        arrays = self.client(context).get_parameters(_config(msg))
        return msg.reply(RecordDict({"arrays": ArrayRecord.from_numpy(arrays)}))


def _config(msg: Message) -> Config:
    record = msg.content.get("config")
    return dict(record) if isinstance(record, ConfigRecord) else {}


def _inputs(msg: Message) -> tuple[list[str], NDArrays, Config]:
    arrays = msg.content.get("arrays")
    if not isinstance(arrays, ArrayRecord):
        raise AppError("message has no ArrayRecord under 'arrays' for the NumPyClient")
    return list(arrays), arrays.to_numpy(), _config(msg)


def _named(names: list[str], arrays: Any) -> ArrayRecord:
    """The client's arrays under the names the server used, so they match its model."""
    if not isinstance(arrays, (list, tuple)):
        raise AppError(f"NumPyClient.fit must return a list of arrays, got {type(arrays).__name__}")
    if len(arrays) != len(names):
        raise AppError(
            f"NumPyClient.fit returned {len(arrays)} arrays for a model of {len(names)}: "
            "return one array per parameter, in the order they came"
        )
    return ArrayRecord(zip(names, arrays, strict=True))


def _unpack(method: str, result: Any) -> tuple[Any, int, Metrics]:
    if not isinstance(result, tuple) or len(result) != 3:
        shape = (
            "(arrays, num_examples, metrics)"
            if method == "fit"
            else "(loss, num_examples, metrics)"
        )
        raise AppError(f"NumPyClient.{method} must return a tuple {shape}, got {result!r:.80}")
    first, num_examples, metrics = result
    return first, num_examples, metrics


def _metrics(method: str, metrics: Mapping[str, Any] | None, num_examples: Any) -> MetricRecord:
    if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)):
        raise AppError(
            f"NumPyClient.{method} returned num_examples={num_examples!r}; it must be an int"
        )
    record = MetricRecord(metrics or {})
    record["num-examples"] = int(num_examples)
    return record
