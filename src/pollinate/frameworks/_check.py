"""The name and shape checks every framework's ``load_arrays`` makes before it writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import RecordError
from ..records import Array, ArrayRecord

__all__ = ["check_matches"]


def check_matches(
    arrays: ArrayRecord, expected: Mapping[str, Sequence[int]], what: str
) -> list[Array]:
    """``arrays`` in the order of ``expected`` (name -> shape); one clear error if they differ.

    A missing, extra or reshaped array is named, so two same-shaped weights are never
    silently swapped and a model from another app is never half loaded.
    """
    missing = [name for name in expected if name not in arrays]
    extra = [name for name in arrays if name not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(repr, missing[:5]))}")
        if extra:
            parts.append(f"unexpected {', '.join(map(repr, extra[:5]))}")
        raise RecordError(
            f"the ArrayRecord does not match the {what}: {'; '.join(parts)} "
            "(was it made from another model?)"
        )
    ordered = []
    for name, shape in expected.items():
        array = arrays[name]
        if tuple(array.shape) != tuple(shape):
            raise RecordError(
                f"ArrayRecord[{name!r}] has shape {array.shape}, the {what} needs {tuple(shape)}"
            )
        ordered.append(array)
    return ordered
