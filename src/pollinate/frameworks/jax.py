"""JAX: a pytree of parameters as an ``ArrayRecord``, and back.

Names are the leaves' key paths (``['hidden']['weight']`` is ``hidden.weight``; list and
tuple positions are numbers), in JAX's flattening order, which sorts dict keys. ``load_arrays``
takes a pytree of the same structure (the current parameters) and returns a new one, since
JAX arrays are immutable; each leaf goes to JAX's default device.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

from ..errors import RecordError
from ..records import ArrayRecord
from ._check import check_matches

__all__ = ["load_arrays", "to_arrays"]

PyTreeT = TypeVar("PyTreeT")


def to_arrays(params: Any) -> ArrayRecord:
    """The pytree's leaves as an ``ArrayRecord``, named by key path."""
    import jax

    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    record = ArrayRecord()
    for path, leaf in leaves:
        name = _name(path)
        if name in record:
            raise RecordError(f"two leaves of the pytree are both named {name!r}")
        record[name] = np.asarray(leaf)
    return record


def load_arrays(params: PyTreeT, arrays: ArrayRecord) -> PyTreeT:
    """A pytree shaped like ``params`` holding ``arrays`` (names and shapes must match)."""
    import jax
    import jax.numpy as jnp

    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    expected = {_name(path): tuple(np.shape(leaf)) for path, leaf in leaves}
    ordered = check_matches(arrays, expected, "parameter pytree")
    new_leaves = [jnp.asarray(array.numpy()) for array in ordered]
    return jax.tree_util.tree_unflatten(treedef, new_leaves)  # type: ignore[no-any-return]


def _name(path: tuple[Any, ...]) -> str:
    """A key path as a dotted name: dict keys, attribute names and positions, joined by '.'."""
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return ".".join(parts) or "value"
