"""Resuming a run: the rounds it completed and the global model after the last of them.

A runner that kept a run's progress (the link's database) installs a ResumePoint around
the ServerApp; ``Strategy.start`` takes it and carries on from the next round, so rounds
already done are neither lost nor counted twice.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

from ..records import ArrayRecord
from ._history import RoundRecord

__all__ = ["ResumePoint", "resuming", "still_offered", "take_resume_point"]


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """The completed rounds of an interrupted run, and the global model after the last one."""

    arrays: ArrayRecord
    rounds: tuple[RoundRecord, ...]
    last_round: int
    strategy_state: ArrayRecord | None = None
    """A stateful strategy's state after ``last_round`` (server moments, control variates)."""


_point: contextvars.ContextVar[ResumePoint | None] = contextvars.ContextVar(
    "pollinate_resume_point", default=None
)


@contextlib.contextmanager
def resuming(point: ResumePoint | None) -> Iterator[None]:
    """Offer ``point`` to the first ``Strategy.start`` inside the ``with`` block."""
    token = _point.set(point)
    try:
        yield
    finally:
        _point.reset(token)


def still_offered(point: ResumePoint) -> bool:
    """True if no ``Strategy.start`` took ``point`` (call it inside the ``with`` block)."""
    return _point.get() is point


def take_resume_point() -> ResumePoint | None:
    """The point to resume from, once: a second ``Strategy.start`` starts afresh."""
    point = _point.get()
    _point.set(None)
    return point
