"""Flower's ``Client``: ``fit(FitIns) -> FitRes`` and friends, over ``Parameters``.

``NumPyClient.to_client()`` returns one; the adapter unwraps it again, so a NumPyClient
never pays for the conversion.
"""

from __future__ import annotations

from typing import Any

from ....errors import AppError
from ..common.parameter import ndarrays_to_parameters, parameters_to_ndarrays
from ..common.typing import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    GetParametersRes,
    GetPropertiesIns,
    GetPropertiesRes,
    Status,
)
from .numpy_client import NumPyClient

__all__ = ["Client", "numpy_as_client", "unwrap"]

_OK = Status(Code.OK, "Success")


class Client:
    """Subclass and override ``get_parameters``, ``fit`` and ``evaluate`` (with ``Ins``/``Res``).

    ``self.context`` is the node's Context while a method runs.
    """

    context: Any

    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        """The client's properties (none by default)."""
        return GetPropertiesRes(_OK, {})

    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        """The local model's weights."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_parameters")

    def fit(self, ins: FitIns) -> FitRes:
        """Train from ``ins.parameters`` with ``ins.config``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement fit")

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        """Evaluate ``ins.parameters`` with ``ins.config``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement evaluate")

    def get_context(self) -> Any:
        """The node's Context."""
        return self.context

    def set_context(self, context: Any) -> None:
        """Set the node's Context."""
        self.context = context

    def to_client(self) -> Client:
        """The client itself."""
        return self


class _NumPyClientAsClient(Client):
    """A NumPyClient behind Flower's ``Client`` methods (what ``to_client()`` returns)."""

    def __init__(self, numpy_client: NumPyClient) -> None:
        self.numpy_client = numpy_client

    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        return GetPropertiesRes(_OK, self.numpy_client.get_properties(ins.config))

    def get_parameters(self, ins: GetParametersIns) -> GetParametersRes:
        arrays = self.numpy_client.get_parameters(ins.config)
        return GetParametersRes(_OK, ndarrays_to_parameters(arrays))

    def fit(self, ins: FitIns) -> FitRes:
        result = self.numpy_client.fit(parameters_to_ndarrays(ins.parameters), ins.config)
        arrays, num_examples, metrics = _three("fit", result)
        return FitRes(_OK, ndarrays_to_parameters(arrays), num_examples, metrics)

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        result = self.numpy_client.evaluate(parameters_to_ndarrays(ins.parameters), ins.config)
        loss, num_examples, metrics = _three("evaluate", result)
        return EvaluateRes(_OK, float(loss), num_examples, metrics)

    def set_context(self, context: Any) -> None:
        self.context = self.numpy_client.context = context


def numpy_as_client(numpy_client: NumPyClient) -> Client:
    """``numpy_client`` as a ``Client`` (see ``NumPyClient.to_client``)."""
    return _NumPyClientAsClient(numpy_client)


def unwrap(client: Client) -> NumPyClient | Client:
    """The NumPyClient behind ``to_client()``, else the client itself."""
    return client.numpy_client if isinstance(client, _NumPyClientAsClient) else client


def _three(method: str, result: Any) -> tuple[Any, int, Any]:
    if not isinstance(result, tuple) or len(result) != 3:
        raise AppError(f"NumPyClient.{method} must return a tuple of three, got {result!r:.80}")
    first, num_examples, metrics = result
    return first, num_examples, metrics
