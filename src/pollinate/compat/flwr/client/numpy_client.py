"""Flower's ``NumPyClient``: ``get_parameters`` / ``fit`` / ``evaluate`` with numpy arrays.

It runs through pollinate's own classic client adapter (``pollinate.NumPyClient``'s
handlers): ``client_fn_handlers`` wraps it. The arrays ``fit`` and ``evaluate`` receive are
writable copies, as in Flower (pollinate's own are read-only views).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..common.typing import Config, NDArrays, Scalar

if TYPE_CHECKING:
    from .client import Client

__all__ = ["NumPyClient"]


class NumPyClient:
    """Subclass and override ``get_parameters``, ``fit`` and ``evaluate`` (Flower's names).

    ``self.context`` is the node's Context while a method runs.
    """

    context: Any

    def get_properties(self, config: Config) -> dict[str, Scalar]:
        """The client's properties (none by default)."""
        return {}

    def get_parameters(self, config: Config) -> NDArrays:
        """The local model's weights, in order."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_parameters")

    def fit(self, parameters: NDArrays, config: Config) -> tuple[NDArrays, int, dict[str, Scalar]]:
        """Train from ``parameters``: (new weights, number of examples, metrics)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement fit")

    def evaluate(
        self, parameters: NDArrays, config: Config
    ) -> tuple[float, int, dict[str, Scalar]]:
        """Evaluate ``parameters``: (loss, number of examples, metrics)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement evaluate")

    def to_client(self) -> Client:
        """The client as a Flower ``Client`` (its methods take and return ``FitIns``...)."""
        from .client import numpy_as_client

        return numpy_as_client(self)
