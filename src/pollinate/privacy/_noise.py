"""Where differential privacy's randomness comes from: a seed (simulation) or the OS.

With a seed, every draw comes from ``numpy.random.default_rng([seed, round, stream, ...])``
(PCG64): the same seed gives the same sample and the same noise, bit for bit, whatever ran
before. Without one (``seed=None``, the default), Gaussian noise is made by the Box-Muller
transform from ``os.urandom`` bytes, a cryptographically secure source, each value the sum
of four draws over two (a mitigation of floating-point attacks: docs/privacy.md), and
Poisson samples from a PCG64 generator seeded with 128 fresh bits of it: nobody who knows
the code and its settings can predict the noise or the sample, which a guarantee needs of
both.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np

__all__ = ["NoiseSource", "Normals"]

Normals: TypeAlias = Callable[[int], "np.ndarray[Any, np.dtype[np.float64]]"]
"""Draws ``n`` independent standard normal float64 values; successive calls continue the stream."""

SAMPLING, UPDATE_NOISE, COUNT_NOISE = 0, 1, 2
"""The streams a round draws from, so that no two uses of the randomness share values."""


class NoiseSource:
    """A seeded (reproducible) or OS (unpredictable) source of a DP piece's randomness."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed

    def generator(self, *key: int) -> np.random.Generator:
        """A generator for ``key`` (round, stream, ...): seeded from it, or from 128 OS bits."""
        if self.seed is None:
            return np.random.default_rng(secrets.randbits(128))
        return np.random.default_rng([self.seed, *key])

    def normals(self, *key: int) -> Normals:
        """Standard normal draws for ``key``: the seeded generator's, or Box-Muller from the OS."""
        if self.seed is None:
            return _os_normals
        return self.generator(*key).standard_normal

    def __repr__(self) -> str:
        return "os" if self.seed is None else f"seed={self.seed}"


SECURE_DRAWS = 4
"""Box-Muller draws summed into one OS normal (over ``sqrt(4) = 2``), as Opacus's
``secure_mode`` does (Holohan and Braghin 2021, https://arxiv.org/abs/2107.10138): the sum
blurs the floating-point gaps and rounding of any one draw, which the attacks on
Box-Muller noise read (Jin et al. 2021, https://arxiv.org/abs/2112.05307)."""


def _os_normals(n: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``n`` standard normals from ``os.urandom``: each the sum of four draws over two."""
    draws = _box_muller(SECURE_DRAWS * n).reshape(SECURE_DRAWS, n)
    return np.asarray(draws.sum(axis=0) * (1 / np.sqrt(SECURE_DRAWS)), np.float64)


def _box_muller(n: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``n`` standard normals from ``os.urandom`` by the Box-Muller transform.

    Uniforms in (0, 1] have 53 random bits each, so a draw is at most
    ``sqrt(2 ln 2^53)``, about 8.6 standard deviations: a tail of probability 1e-17.
    """
    pairs = (n + 1) // 2
    bits = np.frombuffer(os.urandom(16 * pairs), dtype=np.uint64) >> np.uint64(11)
    uniforms = (bits.astype(np.float64) + 1.0) * 2.0**-53
    radius = np.sqrt(-2.0 * np.log(uniforms[:pairs]))
    angle = 2.0 * np.pi * uniforms[pairs:]
    out = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])
    return out[:n]
