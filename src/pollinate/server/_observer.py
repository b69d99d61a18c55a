"""Run observers: who hears about each round as it finishes (files, progress view, logs).

The runner hands a ServerApp a grid that carries the run's observers (``grid.observer``);
``Strategy.start`` reports to it, and so can a hand-written round loop
(``grid.observer.on_round(record)``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from .._durable import clean_temp_files, make_folder, write_file
from ..records import ArrayRecord
from ._history import Result, RoundRecord, jsonl_line, save_arrays, write_jsonl_line
from ._resume import ResumePoint

__all__ = ["FileRecorder", "LogReporter", "Observers", "RunObserver"]

log = logging.getLogger("pollinate.server")


class RunObserver(Protocol):
    """Receives a run's progress; every method is optional to act on.

    Subclass it to inherit no-op methods and override only the events you need. A round
    reports ``on_round_start``, ``on_round``, ``on_strategy_state`` (if the strategy keeps
    state) and ``on_arrays``, in that order.
    """

    def on_resume(self, last_round: int) -> None:
        """The run carries on after ``last_round``: the rounds up to it were done before."""
        return None

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        """A round begins."""
        return None

    def on_round(self, record: RoundRecord) -> None:
        """A round finished."""
        return None

    def on_strategy_state(self, server_round: int, state: ArrayRecord) -> None:
        """What the strategy keeps after ``server_round`` (optimizer moments, control variates).

        It comes just before ``on_arrays`` of the same round, so a recorder (the link's
        database) keeps both together and a resumed run carries on with it.
        """
        return None

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """The global model after ``server_round``; round 0 is the initial model."""
        return None

    def on_result(self, result: Result) -> None:
        """The strategy finished with this result."""
        return None


class Observers(RunObserver):
    """Several observers heard as one: each event goes to each of them, in order."""

    def __init__(self, observers: Sequence[RunObserver] = ()) -> None:
        self.observers = tuple(observers)

    def on_resume(self, last_round: int) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.on_resume(last_round)

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.on_round_start(server_round, num_rounds)

    def on_round(self, record: RoundRecord) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.on_round(record)

    def on_strategy_state(self, server_round: int, state: ArrayRecord) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.on_strategy_state(server_round, state)

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.on_arrays(server_round, arrays)

    def on_result(self, result: Result) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.on_result(result)


class FileRecorder(RunObserver):
    """Writes a run's files as it goes, each durable (fsynced) before the next observer hears.

    ``metrics.jsonl`` gets a line as each round ends; ``checkpoints/round-NNNN.npz`` the
    global model after each round, ``round-0000.npz`` the initial one (unless
    ``checkpoints=False``); ``model.npz`` the final model. A resumed run passes its
    ResumePoint: ``metrics.jsonl`` is rewritten to one line per round it keeps, and the
    checkpoint of its last round is written again if a crash lost it. Temp files a crashed
    write left are removed.
    """

    def __init__(
        self, out_dir: Path, checkpoints: bool = True, resume: ResumePoint | None = None
    ) -> None:
        self.out_dir = out_dir
        self.metrics_path = out_dir / "metrics.jsonl"
        self.model_path = out_dir / "model.npz"
        self.checkpoints_dir = out_dir / "checkpoints" if checkpoints else None
        self.result: Result | None = None
        make_folder(out_dir)
        clean_temp_files(out_dir, *([self.checkpoints_dir] if self.checkpoints_dir else []))
        # A run starts the file afresh; a resumed run rewrites the rounds it keeps, dropping
        # any line of a round that was cut short. Whole, then renamed: never half a history.
        kept = "".join(jsonl_line(r.to_json()) + "\n" for r in resume.rounds) if resume else ""
        write_file(self.metrics_path, lambda f: f.write(kept.encode("utf-8")))
        if resume is not None and self.checkpoints_dir is not None:
            last = self._checkpoint(resume.last_round)
            if not last.is_file():
                save_arrays(resume.arrays, last)

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        """Nothing to write until the round ends."""

    def on_round(self, record: RoundRecord) -> None:
        """Append the round to ``metrics.jsonl``."""
        write_jsonl_line(self.metrics_path, record.to_json())

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """Save the round's global model as a checkpoint."""
        if self.checkpoints_dir is not None:
            save_arrays(arrays, self._checkpoint(server_round))

    def on_result(self, result: Result) -> None:
        """Save the final model."""
        self.result = result
        save_arrays(result.arrays, self.model_path)

    def _checkpoint(self, server_round: int) -> Path:
        assert self.checkpoints_dir is not None
        return self.checkpoints_dir / f"round-{server_round:04d}.npz"


class LogReporter(RunObserver):
    """Logs one line per round, for runs without a live view (scripts, files, CI)."""

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        """Log the start of a round."""
        log.info("round %d/%d started", server_round, num_rounds)

    def on_round(self, record: RoundRecord) -> None:
        """Log what the round produced."""
        log.info("round %d: %s", record.server_round, _summary(record.to_json()))

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """Nothing to log: the model is in the files."""

    def on_result(self, result: Result) -> None:
        """Log the end of the run."""
        log.info("finished %d rounds in %.2f s", len(result.rounds), result.rounds_time_s)


def _summary(payload: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in payload.items() if v}, default=str)
