"""Resuming a run: the rounds it completed, the global model and the strategy's state.

A runner that kept a run's progress (the link's database) passes a ResumePoint to
``run_server_app``; the grid it hands the ServerApp carries it (``grid.resume_point``), and
``Strategy.start`` carries on from the next round, so rounds already done are neither lost
nor counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..records import ArrayRecord
from ._history import RoundRecord

__all__ = ["ResumePoint"]


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where an interrupted run carries on: one value, restored whole.

    The completed rounds, the global model after the last of them, and the strategy's
    state after it (server moments, control variates; None if the recorder kept none).
    """

    arrays: ArrayRecord
    rounds: tuple[RoundRecord, ...]
    last_round: int
    strategy_state: ArrayRecord | None = None
    """A stateful strategy's state after ``last_round`` (server moments, control variates)."""
