"""Clipping an update's delta to an L2 norm: one implementation for every piece that clips.

``norm_bound`` (a robust filter), central DP's clip on the server and the nodes' clipping
mods (:mod:`pollinate.privacy`) all measure and clip ``arrays - current`` this way: over
the floating-point and complex layers (a complex value counts as its two parts), in
float64, halved so that finite inputs cannot overflow; other layers are not the delta's.
"""

from __future__ import annotations

import math
from typing import Any, TypeAlias

import numpy as np

from ..records import Array, ArrayRecord
from ._aggregate import cast_to

__all__ = [
    "as_float64",
    "clip_delta",
    "delta_norm",
    "flat",
    "half_delta",
    "half_delta_norm",
    "unstack",
]

Floats: TypeAlias = "np.ndarray[Any, Any]"
"""A flat float64 array."""


def flat(data: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``data`` as a flat view, complex numbers as (real, imaginary) pairs."""
    values = data.reshape(-1)
    return values.view(values.real.dtype) if data.dtype.kind == "c" else values


def as_float64(array: Array) -> Floats:
    """``array``'s values flat in float64 (complex as pairs)."""
    return np.asarray(flat(array.numpy()), np.float64)


def unstack(values: Floats, like: Array) -> np.ndarray[Any, Any]:
    """Flat float64 ``values`` in ``like``'s shape and dtype (integers rounded, bools >= 0.5)."""
    if like.dtype.kind == "c":
        return values.view(np.complex128).reshape(like.shape).astype(like.dtype)
    shaped = values.reshape(like.shape)
    if like.dtype.kind == "f":
        return shaped.astype(like.dtype)
    return cast_to(shaped, like.dtype)


def half_delta(new: Array, old: Array) -> Floats:
    """``(new - old) / 2`` flat, in float64: halved, it cannot overflow for finite inputs."""
    return as_float64(new) * 0.5 - as_float64(old) * 0.5


def half_delta_norm(arrays: ArrayRecord, current: ArrayRecord) -> tuple[float, float]:
    """``(peak, sum_sq)`` with ``||(arrays - current) / 2|| = peak * sqrt(sum_sq)``.

    A scaled sum of squares over the floating-point layers (as BLAS ``nrm2`` keeps it), so
    a delta of huge values cannot overflow the norm to infinity.
    """
    peak, sum_sq = 0.0, 0.0
    for name, like in current.items():
        if like.dtype.kind not in "fc":
            continue
        half = half_delta(arrays[name], like)
        layer_peak = float(np.max(np.abs(half), initial=0.0))
        if layer_peak == 0.0:
            continue
        if layer_peak > peak:
            sum_sq *= (peak / layer_peak) ** 2
            peak = layer_peak
        scaled = half / peak
        # einsum, not np.dot: BLAS's threads make a dot 100x slower on a busy machine.
        sum_sq += float(np.einsum("i,i->", scaled, scaled.conj()).real)
    return peak, sum_sq


def delta_norm(arrays: ArrayRecord, current: ArrayRecord) -> float:
    """``||arrays - current||`` over the floating-point layers (inf if it overflows)."""
    peak, sum_sq = half_delta_norm(arrays, current)
    with np.errstate(over="ignore"):
        return float(2 * peak * math.sqrt(sum_sq))


def clip_delta(arrays: ArrayRecord, current: ArrayRecord, max_norm: float) -> ArrayRecord:
    """``arrays`` clipped: itself if its delta from ``current`` is within ``max_norm``.

    Else a copy whose floating-point delta is scaled to ``max_norm`` (other layers as in
    ``arrays``).
    """
    peak, sum_sq = half_delta_norm(arrays, current)
    if peak * math.sqrt(sum_sq) <= max_norm / 2:  # ||delta|| = 2 * peak * sqrt(sum_sq)
        return arrays
    factor = max_norm / math.sqrt(sum_sq)
    out = ArrayRecord()
    for name, like in current.items():
        if like.dtype.kind not in "fc":
            out[name] = arrays[name]
            continue
        moved = as_float64(like) + (half_delta(arrays[name], like) / peak) * factor
        out[name] = Array(unstack(moved, like))
    return out
