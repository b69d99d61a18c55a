"""Flower's ``flwr.common``: the classic API's types, conversions and logger.

Maps: ``Parameters``, ``FitIns``/``FitRes``/``EvaluateIns``/``EvaluateRes``, ``Status``,
``Code`` (plain dataclasses, ``.typing``); ``ndarrays_to_parameters`` /
``parameters_to_ndarrays`` (``.parameter``); ``log`` (``.logger``, on pollinate's logger).
The message API's ``Context``, record types and ``Message`` come from the ``app`` side
(``.._records``), loaded when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from .._missing import unsupported
from .logger import log as log
from .parameter import bytes_to_ndarray as bytes_to_ndarray
from .parameter import ndarray_to_bytes as ndarray_to_bytes
from .parameter import ndarrays_to_parameters as ndarrays_to_parameters
from .parameter import parameters_to_ndarrays as parameters_to_ndarrays
from .typing import Code as Code
from .typing import Config as Config
from .typing import EvaluateIns as EvaluateIns
from .typing import EvaluateRes as EvaluateRes
from .typing import FitIns as FitIns
from .typing import FitRes as FitRes
from .typing import GetParametersIns as GetParametersIns
from .typing import GetParametersRes as GetParametersRes
from .typing import GetPropertiesIns as GetPropertiesIns
from .typing import GetPropertiesRes as GetPropertiesRes
from .typing import Metrics as Metrics
from .typing import MetricsAggregationFn as MetricsAggregationFn
from .typing import NDArray as NDArray
from .typing import NDArrays as NDArrays
from .typing import Parameters as Parameters
from .typing import Properties as Properties
from .typing import Scalar as Scalar
from .typing import Status as Status

_RECORDS = frozenset(
    {
        "Array",
        "ArrayRecord",
        "ConfigRecord",
        "Context",
        "Error",
        "Message",
        "MessageType",
        "MetricRecord",
        "RecordDict",
    }
)

__all__ = sorted(
    {
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
        "bytes_to_ndarray",
        "log",
        "ndarray_to_bytes",
        "ndarrays_to_parameters",
        "parameters_to_ndarrays",
    }
    | _RECORDS
)


def __getattr__(name: str) -> Any:
    """The message API's types (``Context``, records, ``Message``), loaded when first used."""
    if name in _RECORDS:
        return getattr(importlib.import_module("pollinate.compat.flwr._records"), name)
    raise unsupported(
        "pollinate.compat.flwr.common",
        name,
        "pollinate.records and pollinate.message hold the native types",
    )
