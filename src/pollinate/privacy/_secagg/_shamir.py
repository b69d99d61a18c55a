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
    polynomial = _decode(points, threshold)
    if check is not None and (polynomial is None or not _passes(polynomial([0])[0], length, check)):
        polynomial = _search(points, threshold, length, check)
    values = polynomial([0, *(x for x, _ in points)]) if polynomial is not None else [-1]
    if not 0 <= values[0] < 2 ** (8 * length):
        raise ValueError(
            f"the {len(shares)} shares fit no one secret: too many of them are wrong to "
            f"outvote with threshold {threshold}"
        )
    wrong = [x for (x, y), value in zip(points, values[1:], strict=True) if value != y]
    return values[0].to_bytes(length, "big"), wrong


Polynomial = Callable[[Sequence[int]], list[int]]
"""A polynomial over the field, as the function from some x to its values there."""


def _decode(points: Sequence[tuple[int, int]], threshold: int) -> Polynomial | None:
    """The polynomial most points lie on: through the first ``threshold`` if all agree."""
    first = _lagrange(points[:threshold])
    rest = points[threshold:]
    if first([x for x, _ in rest]) == [y for _, y in rest]:
        return first
    coefficients = _berlekamp_welch(points, threshold)
    return None if coefficients is None else functools.partial(_evaluate_all, coefficients)


def _search(
    points: Sequence[tuple[int, int]], threshold: int, length: int, check: Callable[[bytes], bool]
) -> Polynomial | None:
    """The polynomial through some ``threshold`` points whose secret passes ``check``."""
    subsets = itertools.islice(itertools.combinations(points, threshold), _MAX_SUBSETS)
    return next((f for f in map(_lagrange, subsets) if _passes(f([0])[0], length, check)), None)


def _passes(value: int, length: int, check: Callable[[bytes], bool]) -> bool:
    return value.bit_length() <= 8 * length and check(value.to_bytes(length, "big"))


def _lagrange(base: Sequence[tuple[int, int]]) -> Polynomial:
    """The polynomial through ``base`` (distinct x), in barycentric form.

    Its values at many x cost one modular inversion in all (``_inverses``), and each
    value, once found, is kept.
    """
    known = dict(base)
    bx = list(known)
    weights = _inverses([_product((xi - xj) % PRIME for xj in bx if xj != xi) for xi in bx])
    scaled = [known[xi] * w % PRIME for xi, w in zip(bx, weights, strict=True)]

    def values(xs: Sequence[int]) -> list[int]:
        new = [x for x in xs if x not in known]
        differences = [(x - xi) % PRIME for x in new for xi in bx]
        inverses = _inverses(differences)
        for row, x in enumerate(new):
            part = slice(row * len(bx), (row + 1) * len(bx))
            total = sum(s * d for s, d in zip(scaled, inverses[part], strict=True))
            known[x] = _product(differences[part]) * (total % PRIME) % PRIME
        return [known[x] for x in xs]

    return values


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


def _evaluate_all(coefficients: Sequence[int], xs: Sequence[int]) -> list[int]:
    return [_evaluate(coefficients, x) for x in xs]


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    """The polynomial at ``x`` (Horner's rule, mod the prime)."""
    result = 0
    for coefficient in reversed(coefficients):
        result = (result * x + coefficient) % PRIME
    return result
