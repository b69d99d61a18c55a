"""Run a ServerApp on a Grid: observers attached, files written, the Result returned."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path

from ..context import Context
from ..errors import AppError
from ..message import Message
from ._app import ServerApp
from ._grid import Grid
from ._history import Result
from ._observer import FileRecorder, Observers, RunObserver
from ._resume import ResumePoint

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
    ``metrics.jsonl`` keeps exactly those rounds). The ServerApp gets a grid that carries
    the observers and the resume point to ``Strategy.start``.
    """
    recorder = None
    if out_dir is not None:
        recorder = FileRecorder(Path(out_dir), checkpoints, resume)
    outcome = _Outcome()
    observer = Observers([*([recorder] if recorder else []), *observers, outcome])
    returned = server_app(_RunGrid(grid, observer, resume, outcome), context)
    if resume is not None and not outcome.resumed:
        raise AppError(
            "the run was to resume after round "
            f"{resume.last_round}, but the ServerApp never called strategy.start(), which "
            "resumes it: a hand-written round loop cannot resume (start a fresh run)"
        )
    result = returned if isinstance(returned, Result) else outcome.result
    if result is None:
        raise AppError(
            "the ServerApp finished without a result: return the Result of strategy.start() "
            "from main, or report it with grid.observer.on_result(result)"
        )
    if recorder is not None and recorder.result is not result:  # a hand-written round loop
        recorder.on_result(result)
    return result


class _Outcome(RunObserver):
    """What the runner learns from the run's events: whether it resumed, its last result."""

    def __init__(self) -> None:
        self.resumed = False
        self.result: Result | None = None

    def on_resume(self, last_round: int) -> None:
        """A round loop took the resume point: no other may."""
        self.resumed = True

    def on_result(self, result: Result) -> None:
        """Keep the result."""
        self.result = result


class _RunGrid(Grid):
    """The grid a ServerApp runs on: a transport, with its run's observers and resume point."""

    def __init__(
        self, grid: Grid, observer: RunObserver, resume: ResumePoint | None, outcome: _Outcome
    ) -> None:
        self._grid = grid
        self._observer = observer
        self._resume = resume
        self._outcome = outcome

    @property
    def observer(self) -> RunObserver:
        """The run's observers, as one."""
        return self._observer

    @property
    def resume_point(self) -> ResumePoint | None:
        """The point to resume from until a round loop resumed from it; then None."""
        return None if self._outcome.resumed else self._resume

    @property
    def run_id(self) -> int:
        """The transport's run id."""
        return self._grid.run_id

    def node_ids(self) -> Sequence[int]:
        """The transport's available nodes."""
        return self._grid.node_ids()

    def wait_for_nodes(self, count: int, timeout_s: float) -> Sequence[int]:
        """The transport's wait (simulation answers at once)."""
        return self._grid.wait_for_nodes(count, timeout_s)

    def send(self, messages: Iterable[Message]) -> list[str]:
        """Send through the transport."""
        return self._grid.send(messages)

    def receive(
        self, message_ids: Sequence[str], timeout_s: float | None = None
    ) -> Iterator[Message]:
        """Receive through the transport."""
        return self._grid.receive(message_ids, timeout_s)

    def receive_in_order(
        self, message_ids: Sequence[str], timeout_s: float | None = None
    ) -> Iterator[Message]:
        """Receive in send order through the transport (the link holds fewer replies so)."""
        return self._grid.receive_in_order(message_ids, timeout_s)

    def now(self) -> float | None:
        """The transport's clock (None: wall time)."""
        return self._grid.now()

    def receive_first(
        self, message_ids: Collection[str], timeout_s: float | None = None
    ) -> Message | None:
        """The transport's first reply of ``message_ids`` (None: none within ``timeout_s``)."""
        return self._grid.receive_first(message_ids, timeout_s)

    def abandon(self, message_ids: Collection[str]) -> None:
        """Let go of the messages on the transport."""
        self._grid.abandon(message_ids)
