"""Shamir secret sharing over the prime field of the Mersenne prime 2**521 - 1.

A secret of up to 64 bytes becomes the constant term of a random polynomial of degree
``threshold - 1``; the share for holder ``x`` is the polynomial at ``x``. Any ``threshold``
shares give the secret back by Lagrange interpolation at 0; fewer give no information about
it, since every secret fits them with some polynomial (the test shows it).

With more than ``threshold`` shares, ``combine`` also outvotes wrong ones: it
decodes the shares as a Reed-Solomon codeword (Berlekamp-Welch), which corrects up to
``(shares - threshold) // 2`` wrong shares and names their holders.
"""

from __future__ import annotations

import functools
import itertools
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = ["PRIME", "SHARE_BYTES", "combine", "split"]

PRIME = 2**521 - 1
"""The field's modulus: a Mersenne prime above every 64-byte secret."""

SHARE_BYTES = 66
"""A share's value, big-endian: 521 bits fit in 66 bytes."""

_MAX_SECRET_BYTES = 64
_MAX_SUBSETS = 10_000
"""Subsets of shares ``combine`` tries against a check before it gives up."""


def split(secret: bytes, threshold: int, holders: Sequence[int]) -> dict[int, bytes]:
    """Shares of ``secret`` by holder id (a positive int); any ``threshold`` rebuild it."""
    if len(secret) > _MAX_SECRET_BYTES:
        raise ValueError(f"a secret holds at most {_MAX_SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= len(holders):
        raise ValueError(f"threshold {threshold} needs 1 to {len(holders)} holders")
    if len(set(holders)) != len(holders) or any(not 0 < x < PRIME for x in holders):
        raise ValueError("holders must be distinct positive ids")
    coefficients = [int.from_bytes(secret, "big")] + [
        secrets.randbelow(PRIME) for _ in range(threshold - 1)
    ]
    return {x: _evaluate(coefficients, x).to_bytes(SHARE_BYTES, "big") for x in holders}


def combine(
    shares: Mapping[int, bytes],
    threshold: int,
    length: int,
    check: Callable[[bytes], bool] | None = None,
) -> tuple[bytes, list[int]]:
    """The secret, and the holders whose shares are wrong; ValueError if it is not unique.

    Rebuilds the secret when at most ``(len(shares) - threshold) // 2`` shares are wrong;
    with ``check`` (whether a candidate is the secret: a private key against its public
    key, say), when any ``threshold`` of them are right, trying up to 10,000 subsets.
    """
    if len(shares) < threshold:
        raise ValueError(f"{len(shares)} shares cannot rebuild a secret of threshold {threshold}")
    points = [(x, int.from_bytes(y, "big")) for x, y in sorted(shares.items())]
    at = _decode(points, threshold)
    if check is not None and (at is None or not _passes(at(0), length, check)):
        at = _search(points, threshold, length, check)
    if at is None or at(0).bit_length() > 8 * length:
        raise ValueError(
            f"the {len(shares)} shares fit no one secret: too many of them are wrong to "
            f"outvote with threshold {threshold}"
        )
    wrong = [x for x, y in points if at(x) != y]
    return at(0).to_bytes(length, "big"), wrong


def _decode(points: Sequence[tuple[int, int]], threshold: int) -> Callable[[int], int] | None:
    """The polynomial most points lie on: through the first ``threshold`` if all agree."""
    at = _lagrange(points[:threshold])
    if all(at(x) == y for x, y in points[threshold:]):
        return at
    coefficients = _berlekamp_welch(points, threshold)
    return None if coefficients is None else functools.partial(_evaluate, coefficients)


def _search(
    points: Sequence[tuple[int, int]], threshold: int, length: int, check: Callable[[bytes], bool]
) -> Callable[[int], int] | None:
    """The polynomial through some ``threshold`` points whose secret passes ``check``."""
    subsets = itertools.islice(itertools.combinations(points, threshold), _MAX_SUBSETS)
    return next((f for f in map(_lagrange, subsets) if _passes(f(0), length, check)), None)


def _passes(value: int, length: int, check: Callable[[bytes], bool]) -> bool:
    return value.bit_length() <= 8 * length and check(value.to_bytes(length, "big"))


def _lagrange(base: Sequence[tuple[int, int]]) -> Callable[[int], int]:
    """The polynomial through ``base`` (distinct x), as a function (barycentric form)."""
    xs = [x for x, _ in base]
    denominators = [_product((xi - xj) % PRIME for xj in xs if xj != xi) for xi in xs]
    scaled = [y * w % PRIME for (_, y), w in zip(base, _inverses(denominators), strict=True)]

    def at(x: int) -> int:
        differences = [(x - xi) % PRIME for xi in xs]
        if 0 in differences:
            return base[differences.index(0)][1] % PRIME
        total = sum(s * d for s, d in zip(scaled, _inverses(differences), strict=True))
        return _product(differences) * (total % PRIME) % PRIME

    return at


def _product(values: Iterable[int]) -> int:
    result = 1
    for value in values:
        result = result * value % PRIME
    return result


def _inverses(values: Sequence[int]) -> list[int]:
    """Each value's inverse mod the prime, with one modular inversion (Montgomery's trick)."""
    prefix = [1]
    for value in values:
        prefix.append(prefix[-1] * value % PRIME)
    inverse = pow(prefix[-1], -1, PRIME)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inverse * prefix[i] % PRIME
        inverse = inverse * values[i] % PRIME
    return out


def _berlekamp_welch(points: Sequence[tuple[int, int]], threshold: int) -> list[int] | None:
    """The polynomial of degree < ``threshold`` that all but ``e`` points lie on, or None.

    Solves ``Q(x) = y E(x)`` at every point for ``E`` monic of degree ``e`` (zero at the
    wrong points) and ``Q`` of degree < ``e + threshold``; then the answer is ``Q / E``.
    """
    errors = (len(points) - threshold) // 2
    rows = [
        [pow(x, j, PRIME) for j in range(errors + threshold)]
        + [-y * pow(x, j, PRIME) % PRIME for j in range(errors)]
        + [y * pow(x, errors, PRIME) % PRIME]
        for x, y in points
    ]
    solution = _solve(rows, 2 * errors + threshold)
    if solution is None:
        return None
    q, e = solution[: errors + threshold], [*solution[errors + threshold :], 1]
    quotient, remainder = _divide(q, e)
    if any(remainder):
        return None
    quotient = (quotient + [0] * threshold)[:threshold]
    agreeing = sum(_evaluate(quotient, x) == y for x, y in points)
    return quotient if agreeing >= len(points) - errors else None


def _solve(rows: list[list[int]], unknowns: int) -> list[int] | None:
    """A solution of the augmented linear system mod the prime (free unknowns 0), or None."""
    pivots: list[int] = []
    rank = 0
    for column in range(unknowns):
        pivot = next((r for r in range(rank, len(rows)) if rows[r][column]), None)
        if pivot is None:
            continue
        rows[rank], rows[pivot] = rows[pivot], rows[rank]
        inverse = pow(rows[rank][column], -1, PRIME)
        rows[rank] = [value * inverse % PRIME for value in rows[rank]]
        for r, row in enumerate(rows):
            if r != rank and row[column]:
                factor = row[column]
                rows[r] = [(a - factor * b) % PRIME for a, b in zip(row, rows[rank], strict=True)]
        pivots.append(column)
        rank += 1
    if any(row[-1] for row in rows[rank:]):
        return None
    solution = [0] * unknowns
    for r, column in enumerate(pivots):
        solution[column] = rows[r][-1]
    return solution


def _divide(numerator: list[int], divisor: list[int]) -> tuple[list[int], list[int]]:
    """Quotient and remainder of polynomials (constant term first; ``divisor`` monic)."""
    remainder = list(numerator)
    degree = len(divisor) - 1
    quotient = [0] * max(len(numerator) - degree, 1)
    for shift in range(len(numerator) - 1 - degree, -1, -1):
        factor = remainder[shift + degree]
        quotient[shift] = factor
        for i, value in enumerate(divisor):
            remainder[shift + i] = (remainder[shift + i] - factor * value) % PRIME
    return quotient, remainder[:degree]


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    """The polynomial at ``x`` (Horner's rule, mod the prime)."""
    result = 0
    for coefficient in reversed(coefficients):
        result = (result * x + coefficient) % PRIME
    return result
