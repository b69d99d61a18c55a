"""Keras 3: a model's weights by variable path as an ``ArrayRecord``, and back.

Names are each variable's ``path`` (``mlp/hidden/kernel``), in ``model.weights``' order, so a
missing or renamed weight is an error that names it, never a silent swap of two arrays with
the same shape. Works on every Keras backend (TensorFlow, JAX, PyTorch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ..records import ArrayRecord
from ._check import check_matches

if TYPE_CHECKING:
    import keras

__all__ = ["load_arrays", "to_arrays"]

ModelT = TypeVar("ModelT", bound="keras.Model")


def to_arrays(model: keras.Model) -> ArrayRecord:
    """The model's weights (trainable and not), named by variable path."""
    return ArrayRecord(
        (variable.path, np.asarray(value))
        for variable, value in zip(model.weights, model.get_weights(), strict=True)
    )


def load_arrays(model: ModelT, arrays: ArrayRecord) -> ModelT:
    """Set the model's weights from ``arrays`` (names and shapes must match)."""
    expected = {variable.path: tuple(variable.shape) for variable in model.weights}
    ordered = check_matches(arrays, expected, f"Keras model {model.name!r}")
    model.set_weights([np.array(array.numpy()) for array in ordered])
    return model
