"""The one error a SecAgg+ node raises when it refuses a protocol message."""

from __future__ import annotations

from ...errors import PollinateError

__all__ = ["SecAggError"]


class SecAggError(PollinateError):
    """A protocol message a node refuses: replayed, altered, out of order, or unsafe."""
