"""PyTorch: a module's ``state_dict`` as an ``ArrayRecord``, and back.

Names and order are the ``state_dict``'s (``fc1.weight``, ``fc1.bias``, ...), buffers such as
batch-norm statistics included. ``to_arrays`` shares memory with CPU tensors (no copy);
``load_arrays`` and ``to_state_dict`` copy, since tensors are writable and records are not.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..errors import RecordError
from ..records import Array, ArrayRecord
from ._check import check_matches

if TYPE_CHECKING:
    import torch

__all__ = ["load_arrays", "to_arrays", "to_state_dict"]

ModuleT = TypeVar("ModuleT", bound="torch.nn.Module")


def to_arrays(model: torch.nn.Module | Mapping[str, torch.Tensor]) -> ArrayRecord:
    """A module's ``state_dict`` (or a ``state_dict`` itself) as an ``ArrayRecord``.

    Tensors are detached and moved to the CPU; CPU tensors share memory with the record.
    """
    state = model if isinstance(model, Mapping) else model.state_dict()
    record = ArrayRecord()
    for name, tensor in state.items():
        record[name] = _to_array(name, tensor)
    return record


def to_state_dict(arrays: ArrayRecord) -> OrderedDict[str, torch.Tensor]:
    """The record as a ``state_dict`` of new CPU tensors, in the record's order."""
    import torch

    return OrderedDict(
        (name, torch.from_numpy(np.array(array.numpy()))) for name, array in arrays.items()
    )


def load_arrays(model: ModuleT, arrays: ArrayRecord) -> ModuleT:
    """Load ``arrays`` into ``model`` (names and shapes must match its ``state_dict``)."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    check_matches(arrays, expected, f"{type(model).__name__}'s state_dict")
    model.load_state_dict(to_state_dict(arrays), strict=True)
    return model


def _to_array(name: str, tensor: Any) -> Array:
    try:
        detached = tensor.detach()
        if detached.device.type != "cpu":
            detached = detached.cpu()
        return Array(detached.numpy())
    except TypeError as err:  # e.g. bfloat16, which numpy has no dtype for
        raise RecordError(
            f"ArrayRecord[{name!r}]: {err}; convert the tensor first, e.g. tensor.float()"
        ) from None
    except AttributeError:
        raise RecordError(
            f"ArrayRecord[{name!r}]: expected a torch tensor, got {type(tensor).__name__}"
        ) from None
