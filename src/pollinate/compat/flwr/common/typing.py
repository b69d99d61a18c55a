"""Flower's ``flwr.common.typing``: the classic API's value types, as plain dataclasses.

``Parameters`` may hold numpy arrays instead of bytes: the adapter hands pollinate's arrays
through without serializing them, and ``tensors`` (Flower's ``np.save`` bytes) is made only
when something reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeAlias

import numpy.typing as npt

from ....context import UserConfig as CoreUserConfig
from ....context import UserConfigValue as CoreUserConfigValue
from .._missing import unsupported

__all__ = [
    "Code",
    "Config",
    "EvaluateIns",
    "EvaluateRes",
    "FitIns",
    "FitRes",
    "GetParametersIns",
    "GetParametersRes",
    "GetPropertiesIns",
    "GetPropertiesRes",
    "Metrics",
    "MetricsAggregationFn",
    "NDArray",
    "NDArrays",
    "Parameters",
    "Properties",
    "Scalar",
    "Status",
    "UserConfig",
    "UserConfigValue",
]

NDArray: TypeAlias = npt.NDArray[Any]
NDArrays: TypeAlias = list[NDArray]
Scalar: TypeAlias = bool | bytes | float | int | str
Metrics: TypeAlias = dict[str, Scalar]
Config: TypeAlias = dict[str, Scalar]
Properties: TypeAlias = dict[str, Scalar]
MetricsAggregationFn: TypeAlias = Callable[[list[tuple[int, Metrics]]], Metrics]
"""``[(num_examples, metrics), ...] -> metrics``, Flower's metric aggregation function."""

UserConfig: TypeAlias = CoreUserConfig
"""A run's or a node's config (``context.run_config``): pollinate's ``UserConfig``."""
UserConfigValue: TypeAlias = CoreUserConfigValue

NUMPY_TENSOR_TYPE = "numpy.ndarray"


class Code(Enum):
    """A client's status code."""

    OK = 0
    GET_PROPERTIES_NOT_IMPLEMENTED = 1
    GET_PARAMETERS_NOT_IMPLEMENTED = 2
    FIT_NOT_IMPLEMENTED = 3
    EVALUATE_NOT_IMPLEMENTED = 4


@dataclass
class Status:
    """A client's status: a code and a message."""

    code: Code
    message: str


class Parameters:
    """Model weights: ``tensors`` (one serialized array each) and their ``tensor_type``.

    Built by the adapter from pollinate's arrays, it keeps them as they are (no copy) and
    serializes them to Flower's bytes only if ``tensors`` is read.
    """

    __slots__ = ("_arrays", "_tensors", "tensor_type")

    def __init__(self, tensors: list[bytes], tensor_type: str) -> None:
        self._tensors: list[bytes] | None = list(tensors)
        self._arrays: list[NDArray] | None = None
        self.tensor_type = tensor_type

    @classmethod
    def from_arrays(cls, arrays: list[NDArray]) -> Parameters:
        """Parameters that hold ``arrays`` themselves (serialized only when ``tensors`` is read)."""
        parameters = cls([], NUMPY_TENSOR_TYPE)
        parameters._tensors, parameters._arrays = None, arrays
        return parameters

    @property
    def arrays(self) -> list[NDArray] | None:
        """The arrays held without serializing, or None if these Parameters hold bytes."""
        return self._arrays

    @property
    def tensors(self) -> list[bytes]:
        """One ``np.save`` serialization per array, as Flower sends them."""
        if self._tensors is None:
            from .parameter import ndarray_to_bytes

            self._tensors = [ndarray_to_bytes(a) for a in self._arrays or []]
        return self._tensors

    @tensors.setter
    def tensors(self, value: list[bytes]) -> None:
        self._tensors, self._arrays = list(value), None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Parameters):
            return NotImplemented
        return self.tensor_type == other.tensor_type and self.tensors == other.tensors

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        count = len(self._arrays) if self._arrays is not None else len(self._tensors or [])
        return f"Parameters({count} tensors, tensor_type={self.tensor_type!r})"


@dataclass
class GetPropertiesIns:
    """What the server asks a client for its properties."""

    config: Config


@dataclass
class GetPropertiesRes:
    """A client's properties."""

    status: Status
    properties: Properties


@dataclass
class GetParametersIns:
    """What the server asks a client for its parameters."""

    config: Config


@dataclass
class GetParametersRes:
    """A client's parameters."""

    status: Status
    parameters: Parameters


@dataclass
class FitIns:
    """What a client trains from: the global parameters and the round's config."""

    parameters: Parameters
    config: Config


@dataclass
class FitRes:
    """What a client's training returns."""

    status: Status
    parameters: Parameters
    num_examples: int
    metrics: Metrics


@dataclass
class EvaluateIns:
    """What a client evaluates: the global parameters and the round's config."""

    parameters: Parameters
    config: Config


@dataclass
class EvaluateRes:
    """What a client's evaluation returns."""

    status: Status
    loss: float
    num_examples: int
    metrics: Metrics


def __getattr__(name: str) -> Any:
    """Name what is missing (Flower's deployment types: ``Run``, ``Fab``...) and the way."""
    raise unsupported(
        __name__,
        name,
        "Flower's deployment types (Run, Fab, accounts) have no mapping; the classic API's "
        "value types and UserConfig do",
    )
