"""Masks: the self mask and the pairwise masks a node adds, which the server later removes.

Node ``i`` adds ``PRG(b_i)`` and, for each live neighbour ``j``, ``+PRG(s_ij)`` if
``i < j`` else ``-PRG(s_ij)``, all mod the modulus. ``s_ij = s_ji`` (X25519 + HKDF), so
the pairwise masks of two nodes that both sent their vectors cancel in the sum.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._crypto import agree, expand
from ._keys import MASK_LABEL
from ._quantize import Vector

__all__ = ["apply_masks", "pair_seed", "reduce_mod"]


def pair_seed(private_s: bytes, peer_public_s: bytes, session: bytes) -> bytes:
    """The seed of the pairwise mask two nodes share (the same from either end)."""
    return agree(private_s, peer_public_s, session, MASK_LABEL)


def apply_masks(vector: Vector, masks: Iterable[tuple[int, bytes]]) -> None:
    """Add (sign +1) or subtract (sign -1) each seed's PRG expansion, in place, wrapping."""
    for sign, seed in masks:
        stream = expand(seed, vector.size, vector.dtype)
        if sign > 0:
            vector += stream
        else:
            vector -= stream


def reduce_mod(vector: Vector, modulus: int) -> None:
    """``vector`` mod ``modulus`` (a power of two dividing the dtype's range), in place."""
    if modulus < 2 ** (8 * vector.dtype.itemsize):
        vector &= vector.dtype.type(modulus - 1)
