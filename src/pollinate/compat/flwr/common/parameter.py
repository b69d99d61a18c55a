"""Flower's ``flwr.common.parameter``: arrays to ``Parameters`` and back.

``ndarrays_to_parameters`` keeps the arrays (no serialization until ``tensors`` is read);
``parameters_to_ndarrays`` always returns fresh, writable arrays, as Flower's does, so code
that edits them cannot change the global model.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np

from ....errors import ConfigError
from .typing import NUMPY_TENSOR_TYPE, NDArray, NDArrays, Parameters

__all__ = [
    "bytes_to_ndarray",
    "ndarray_to_bytes",
    "ndarrays_to_parameters",
    "parameters_to_ndarrays",
]


def ndarray_to_bytes(ndarray: NDArray) -> bytes:
    """One array as ``np.save`` bytes (no pickle)."""
    buffer = BytesIO()
    np.save(buffer, ndarray, allow_pickle=False)
    return buffer.getvalue()


def bytes_to_ndarray(tensor: bytes) -> NDArray:
    """One array from ``np.save`` bytes (refusing pickled content)."""
    array: NDArray = np.load(BytesIO(tensor), allow_pickle=False)
    return array


def ndarrays_to_parameters(ndarrays: NDArrays) -> Parameters:
    """``Parameters`` holding these arrays (kept as they are, not copied: do not edit them)."""
    return Parameters.from_arrays([np.asarray(a) for a in ndarrays])


def parameters_to_ndarrays(parameters: Parameters) -> NDArrays:
    """The arrays in ``parameters``, as fresh writable copies."""
    if not isinstance(parameters, Parameters):
        raise ConfigError(
            f"parameters_to_ndarrays takes Parameters, got {type(parameters).__name__}: "
            "wrap arrays with ndarrays_to_parameters(list_of_arrays)"
        )
    if parameters.arrays is not None:
        return [np.array(a) for a in parameters.arrays]
    if parameters.tensor_type != NUMPY_TENSOR_TYPE:
        raise ConfigError(
            f"Parameters of tensor_type {parameters.tensor_type!r} cannot be read as numpy "
            f"arrays; only {NUMPY_TENSOR_TYPE!r} (what ndarrays_to_parameters makes) can"
        )
    return [bytes_to_ndarray(t) for t in parameters.tensors]
