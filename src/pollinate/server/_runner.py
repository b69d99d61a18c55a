"""Run a ServerApp on a Grid: observers installed, files written, the Result returned."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..context import Context
from ..errors import AppError
from ._app import ServerApp
from ._grid import Grid
from ._history import Result
from ._observer import FileRecorder, RunObserver, observing
from ._resume import ResumePoint, resuming, still_offered

__all__ = ["run_server_app"]


def run_server_app(
    server_app: ServerApp,
    grid: Grid,
    context: Context,
    *,
    out_dir: str | Path | None = None,
    checkpoints: bool = True,
    observers: Sequence[RunObserver] = (),
    resume: ResumePoint | None = None,
) -> Result:
    """Run ``server_app`` on ``grid`` and return its Result, whatever transport the grid uses.

    With ``out_dir`` the run's files (``metrics.jsonl``, checkpoints, ``model.npz``) are
    written there as it goes, each durable before ``observers`` hear of its round (so one
    that commits rounds, the link's database, never records a round whose files are
    missing). With ``resume`` the run carries on after the rounds it completed (its
    ``metrics.jsonl`` keeps exactly those rounds).
    """
    recorder = None
    if out_dir is not None:
        recorder = FileRecorder(Path(out_dir), checkpoints, resume)
    last = _LastResult()
    with observing([*([recorder] if recorder else []), *observers, last]), resuming(resume):
        returned = server_app(grid, context)
        if resume is not None and still_offered(resume):
            raise AppError(
                "the run was to resume after round "
                f"{resume.last_round}, but the ServerApp never called strategy.start(), which "
                "resumes it: a hand-written round loop cannot resume (start a fresh run)"
            )
    result = returned if isinstance(returned, Result) else last.result
    if result is None:
        raise AppError(
            "the ServerApp finished without a result: return the Result of strategy.start() "
            "from main, or call pollinate.server.report_result(result)"
        )
    if recorder is not None and recorder.result is not result:  # a hand-written round loop
        recorder.on_result(result)
    return result


class _LastResult(RunObserver):
    """Keeps the last result a strategy reported (the other events are RunObserver's no-ops)."""

    def __init__(self) -> None:
        self.result: Result | None = None

    def on_result(self, result: Result) -> None:
        """Keep the result."""
        self.result = result
