"""From a float update to the integers SecAgg+ sums, and back.

A node's update is its model DELTA (trained minus received): deltas are small and centred
on 0, so a clipping range that fits them wastes far fewer quantization levels than one that
fits the weights themselves. Each coordinate is clipped to ``[-c, c]`` and mapped onto the
integers ``0 .. q-1`` by stochastic rounding: ``x -> floor(y) + (u < y - floor(y))`` with
``y = (x + c) (q - 1) / 2c`` and ``u`` uniform, so the rounding is unbiased and off by less
than one step ``2c / (q - 1)``. The weighted mean of such values is then off by less than
one step per coordinate (plus whatever the clipping cut).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...records import ArrayRecord

__all__ = ["Vector", "dequantize_mean", "flat_delta", "quantize", "step", "vector_dtype"]

Vector = np.ndarray[Any, Any]
"""A flat numpy vector: an update, a masked vector, or their sum."""


def vector_dtype(modulus: int) -> np.dtype[Any]:
    """The unsigned dtype whose wrap-around is arithmetic mod ``modulus`` (a power of two)."""
    return np.dtype(np.uint32) if modulus <= 2**32 else np.dtype(np.uint64)


def step(clipping_range: float, quantization_range: int) -> float:
    """One quantization level: the largest rounding error of one coordinate."""
    return 2.0 * clipping_range / (quantization_range - 1)


def flat_delta(trained: ArrayRecord, received: ArrayRecord) -> Vector:
    """``trained - received``, every array in order, as one float64 vector."""
    parts = [
        np.asarray(trained[name].numpy(), np.float64).ravel()
        - np.asarray(array.numpy(), np.float64).ravel()
        for name, array in received.items()
    ]
    return np.concatenate(parts) if parts else np.zeros(0)


def quantize(
    delta: Vector,
    clipping_range: float,
    quantization_range: int,
    rng: np.random.Generator,
    dtype: np.dtype[Any],
) -> Vector:
    """``delta`` clipped to ``[-c, c]`` and stochastically rounded to ``0 .. q-1``."""
    scale = (quantization_range - 1) / (2.0 * clipping_range)
    scaled = (np.clip(delta, -clipping_range, clipping_range) + clipping_range) * scale
    low = np.floor(scaled)
    rounded = low + (rng.random(scaled.shape) < scaled - low)
    quantized: Vector = np.minimum(rounded, quantization_range - 1).astype(dtype)
    return quantized


def dequantize_mean(
    total: Vector,
    total_weight: int,
    clipping_range: float,
    quantization_range: int,
    received: ArrayRecord,
) -> ArrayRecord:
    """The model after ``received``: its arrays plus the weighted mean delta the sum holds.

    ``total`` is the unmasked sum of ``weight x quantized delta`` over the nodes.
    """
    mean = total.astype(np.float64) * (step(clipping_range, quantization_range) / total_weight)
    mean -= clipping_range
    out = ArrayRecord()
    offset = 0
    for name, array in received.items():
        size = int(np.prod(array.shape))
        part = mean[offset : offset + size].reshape(array.shape)
        offset += size
        out[name] = (np.asarray(array.numpy(), np.float64) + part).astype(array.dtype)
    return out
