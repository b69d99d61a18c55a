"""A Flower client behind pollinate's own classic client adapter (``numpy_client_handlers``).

``client_fn_handlers(client_fn)`` is the one place a Flower ``client_fn`` (``(context)`` or
the legacy ``(cid: str)``) becomes pollinate handlers. The Flower client it returns is
wrapped in a ``pollinate.NumPyClient`` that copies the read-only arrays it is given into
writable ones (Flower's clients may edit them) and converts ``Client``'s ``Ins``/``Res``.
Flower's metrics are Scalars: the text ones (str, bytes, bool), which a MetricRecord does
not hold, travel beside it in the reply's ``TEXT_METRICS`` ConfigRecord.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import numpy as np

from .... import client as pollinate_client
from ....client._numpy_client import numpy_client_handlers
from ....context import Context
from ....errors import AppError, ConfigError
from ....message import Message
from ....records import ConfigRecord
from .. import _records as records
from .._records import Context as FlowerContext
from ..common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from ..common.typing import (
    Code,
    EvaluateIns,
    FitIns,
    GetParametersIns,
    NDArrays,
    Parameters,
    Status,
)
from .client import Client, unwrap
from .numpy_client import NumPyClient

if TYPE_CHECKING:
    from ....client import Handler

__all__ = [
    "TEXT_METRICS",
    "FlowerClientFn",
    "client_fn_handlers",
    "flower_client_app",
    "flower_context",
    "keep_text_metrics",
]

TEXT_METRICS = "metrics-text"
"""The reply's ConfigRecord of a Flower client's text metrics (str, bytes, bool)."""

_text: ContextVar[dict[str, Any] | None] = ContextVar("flower_text_metrics", default=None)
"""The text metrics of the train or evaluate call in progress in this thread."""


class FlowerClientFn:
    """Makes the Flower client for a node and wraps it as a ``pollinate.NumPyClient``.

    An object rather than a closure, so that a ClientApp built from a module-level
    ``client_fn`` can be shipped to worker processes.
    """

    __slots__ = ("client_fn", "takes_cid")

    def __init__(self, client_fn: Callable[..., Any]) -> None:
        if not callable(client_fn):
            raise ConfigError(
                f"client_fn must be a function client_fn(context) -> NumPyClient or Client, "
                f"got {type(client_fn).__name__}"
            )
        self.client_fn = client_fn
        self.takes_cid = _takes_cid(client_fn)

    def __call__(self, context: Context) -> pollinate_client.NumPyClient:
        flower_ctx = flower_context(context)
        made = self.client_fn(_cid(context) if self.takes_cid else flower_ctx)
        return as_pollinate_client(made, flower_ctx)


def client_fn_handlers(client_fn: Callable[..., Any]) -> dict[str, Handler]:
    """Pollinate handlers ("train", "evaluate", "query.get-parameters") for a Flower client_fn.

    Run them under the ``keep_text_metrics`` mod, as ``flower_client_app`` does, so that the
    client's text metrics reach the server.
    """
    return numpy_client_handlers(FlowerClientFn(client_fn))


def flower_client_app(client_fn: Callable[[Context], pollinate_client.NumPyClient]) -> Any:
    """A ``pollinate.ClientApp`` for a client_fn made here, text metrics kept."""
    return pollinate_client.ClientApp(client_fn=client_fn, mods=[keep_text_metrics])


def keep_text_metrics(msg: Message, context: Context, call_next: Handler) -> Message:
    """A mod: the Flower client's text metrics go in the reply's ``TEXT_METRICS`` record."""
    token = _text.set({})
    try:
        reply = call_next(msg, context)
        text = _text.get()
    finally:
        _text.reset(token)
    if text:
        reply.content[TEXT_METRICS] = ConfigRecord(text)
    return reply


def _numbers_only(metrics: Any) -> Any:
    """Flower metrics less the text ones, which are kept for the reply's ConfigRecord."""
    held = _text.get()
    if held is None or not isinstance(metrics, Mapping):
        return metrics
    text = {k: v for k, v in metrics.items() if isinstance(v, (str, bytes, bool))}
    held.update(text)
    return {k: v for k, v in metrics.items() if k not in text}


def as_pollinate_client(client: object, context: Any) -> pollinate_client.NumPyClient:
    """A Flower ``NumPyClient`` or ``Client`` behind pollinate's NumPyClient methods."""
    if isinstance(client, Client):
        client = unwrap(client)
    if not isinstance(client, (NumPyClient, Client)):
        raise AppError(
            f"client_fn must return a Flower NumPyClient or Client, got {type(client).__name__}: "
            "subclass pollinate.compat.flwr.client.NumPyClient"
        )
    with contextlib.suppress(AttributeError):  # __slots__ or a read-only context: kept
        client.context = context
    return _Wrapped(client)


def flower_context(context: Context) -> FlowerContext:
    """Flower's view of a node's Context (the message API's ``Context``, sharing its state)."""
    return records.flower_context(context)


class _Wrapped(pollinate_client.NumPyClient):
    """A Flower client answering pollinate's NumPyClient calls."""

    def __init__(self, flower: NumPyClient | Client) -> None:
        self.flower = flower

    def get_parameters(self, config: dict[str, Any]) -> NDArrays:
        if isinstance(self.flower, NumPyClient):
            return self.flower.get_parameters(config)
        res = self.flower.get_parameters(GetParametersIns(config))
        _check_status("get_parameters", res.status)
        return _arrays(res.parameters)

    def fit(self, parameters: NDArrays, config: dict[str, Any]) -> tuple[Any, int, Any]:
        if isinstance(self.flower, NumPyClient):
            return _with_numbers_only(self.flower.fit(_writable(parameters), config))
        # A Client reads them with parameters_to_ndarrays, which gives writable copies.
        res = self.flower.fit(FitIns(ndarrays_to_parameters(parameters), config))
        _check_status("fit", res.status)
        return _arrays(res.parameters), res.num_examples, _numbers_only(res.metrics)

    def evaluate(self, parameters: NDArrays, config: dict[str, Any]) -> tuple[Any, int, Any]:
        if isinstance(self.flower, NumPyClient):
            return _with_numbers_only(self.flower.evaluate(_writable(parameters), config))
        res = self.flower.evaluate(EvaluateIns(ndarrays_to_parameters(parameters), config))
        _check_status("evaluate", res.status)
        return res.loss, res.num_examples, _numbers_only(res.metrics)


def _with_numbers_only(result: tuple[Any, int, Any]) -> tuple[Any, int, Any]:
    """A NumPyClient's ``(x, num_examples, metrics)`` with its text metrics kept aside.

    Anything else is handed on as it is, for pollinate's adapter to name what is wrong.
    """
    if isinstance(result, tuple) and len(result) == 3:
        first, num_examples, metrics = result
        return first, num_examples, _numbers_only(metrics)
    return result


def _writable(arrays: NDArrays) -> NDArrays:
    """Writable arrays for Flower code: pollinate's read-only views are copied."""
    return [a if a.flags.writeable else np.array(a) for a in arrays]


def _arrays(parameters: Parameters) -> NDArrays:
    """The arrays in ``parameters``: those held as they are, else the decoded bytes."""
    if not isinstance(parameters, Parameters):
        raise AppError(f"a Client must return Parameters, got {type(parameters).__name__}")
    return (
        parameters.arrays if parameters.arrays is not None else parameters_to_ndarrays(parameters)
    )


def _check_status(method: str, status: Status) -> None:
    if status.code != Code.OK:
        raise AppError(f"Client.{method} returned status {status.code.name}: {status.message}")


def _takes_cid(client_fn: Callable[..., Any]) -> bool:
    """Whether ``client_fn`` is the legacy ``client_fn(cid: str)``, not ``client_fn(context)``."""
    try:
        parameters = list(inspect.signature(client_fn).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: take the current form
        return False
    if len(parameters) != 1:
        return False
    (parameter,) = parameters
    return parameter.name == "cid" or parameter.annotation in (str, "str")


def _cid(context: Context) -> str:
    """A node's Flower client id: its partition id in simulation ("0".."N-1"), else its id.

    ``start_simulation(clients_ids=...)`` puts each node's own under ``cid``.
    """
    partition = context.node_config.get("cid", context.node_config.get("partition-id"))
    return str(partition if partition is not None else context.node_id)
