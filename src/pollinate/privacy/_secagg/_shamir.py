"""Shamir secret sharing over the prime field of the Mersenne prime 2**521 - 1.

A secret of up to 64 bytes becomes the constant term of a random polynomial of degree
``threshold - 1``; the share for holder ``x`` is the polynomial at ``x``. Any ``threshold``
shares give the secret back by Lagrange interpolation at 0; fewer give no information about
it, since every secret fits them with some polynomial (the test shows it).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

__all__ = ["PRIME", "SHARE_BYTES", "combine", "split"]

PRIME = 2**521 - 1
"""The field's modulus: a Mersenne prime above every 64-byte secret."""

SHARE_BYTES = 66
"""A share's value, big-endian: 521 bits fit in 66 bytes."""

_MAX_SECRET_BYTES = 64


def split(secret: bytes, threshold: int, holders: Sequence[int]) -> dict[int, bytes]:
    """Shares of ``secret`` by holder id (a positive int); any ``threshold`` rebuild it."""
    if len(secret) > _MAX_SECRET_BYTES:
        raise ValueError(f"a secret holds at most {_MAX_SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= len(holders):
        raise ValueError(f"threshold {threshold} needs 1 to {len(holders)} holders")
    if len(set(holders)) != len(holders) or any(not 0 < x < PRIME for x in holders):
        raise ValueError("holders must be distinct positive ids")
    coefficients = [_value(secret)] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return {x: _evaluate(coefficients, x).to_bytes(SHARE_BYTES, "big") for x in holders}


def combine(shares: Mapping[int, bytes], threshold: int, length: int) -> bytes:
    """The secret of ``length`` bytes rebuilt from at least ``threshold`` shares by holder id."""
    if len(shares) < threshold:
        raise ValueError(f"{len(shares)} shares cannot rebuild a secret of threshold {threshold}")
    points = [(x, int.from_bytes(y, "big")) for x, y in list(shares.items())[:threshold]]
    secret = 0
    for i, (xi, yi) in enumerate(points):
        numerator, denominator = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                numerator = numerator * xj % PRIME
                denominator = denominator * (xj - xi) % PRIME
        secret = (secret + yi * numerator * pow(denominator, -1, PRIME)) % PRIME
    if secret.bit_length() > 8 * length:
        raise ValueError("the shares do not fit together: one of them is wrong")
    return secret.to_bytes(length, "big")


def _value(secret: bytes) -> int:
    return int.from_bytes(secret, "big")


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    """The polynomial at ``x`` (Horner's rule, mod the prime)."""
    result = 0
    for coefficient in reversed(coefficients):
        result = (result * x + coefficient) % PRIME
    return result
