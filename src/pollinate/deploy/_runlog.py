"""A run's log: the lines ``pollinate log`` shows, kept in the run folder and followed live."""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..server import PhaseResult, RoundRecord, RunObserver

__all__ = ["LOG_FILE", "RunLog", "RunLogHandler", "RoundLines"]

LOG_FILE = "log.txt"
NODE_THREADS = ("link-node-", "link-watchdog")
"""The link's threads that read nodes' streams and watch their heartbeats."""


class RunLog:
    """Timestamped lines, appended to ``<run folder>/log.txt`` and handed to followers.

    Thread-safe. A log reopened after a link restart keeps the lines its file holds.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lines: list[str] = []
        try:
            if path is not None and path.is_file():
                self._lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as err:
            self._lines = [f"(the earlier lines in {path} cannot be read: {err})"]
        self._changed = threading.Condition()
        self._closed = False

    def write(self, text: str) -> None:
        """Append ``text`` (one line per line of it), stamped with the time."""
        stamp = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        lines = [f"{stamp} {line}" for line in text.splitlines() or [""]]
        with self._changed:
            self._lines.extend(lines)
            if self.path is not None:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    with self.path.open("a", encoding="utf-8") as file:
                        file.write("".join(line + "\n" for line in lines))
                except OSError as err:  # a full disk must not stop the run: keep the lines here
                    self._lines.append(f"{stamp} WARNING cannot write {self.path}: {err}")
                    self.path = None
            self._changed.notify_all()

    def close(self) -> None:
        """No more lines will come: followers stop after the last one."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def reopen(self) -> None:
        """The run goes on (it resumes after a restart): followers wait again."""
        with self._changed:
            self._closed = False

    def read(self, start: int, wait_s: float = 0.0) -> tuple[list[str], bool]:
        """Lines from index ``start``, waiting up to ``wait_s`` for some; and whether it ended."""
        with self._changed:
            if wait_s > 0 and len(self._lines) <= start and not self._closed:
                self._changed.wait(wait_s)
            return self._lines[start:], self._closed


class RunLogHandler(logging.Handler):
    """Copies ``pollinate`` log records of one run's thread, and about its nodes, to its log."""

    def __init__(self, log: RunLog, thread_id: int) -> None:
        super().__init__(logging.INFO)
        self.log = log
        self.thread_id = thread_id
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record if it comes from the run's thread, or the threads serving nodes."""
        if record.thread == self.thread_id or (record.threadName or "").startswith(NODE_THREADS):
            try:
                self.log.write(self.format(record))
            except OSError:
                self.handleError(record)


class RoundLines(RunObserver):
    """A run observer that writes one line per round to a log, and reports completed rounds."""

    def __init__(self, log: RunLog, round_done: Callable[[int], None] | None = None) -> None:
        self.log = log
        self.round_done = round_done

    def on_round(self, record: RoundRecord) -> None:
        """``round 2: train 3 ok (loss 0.41) | evaluate 3 ok (accuracy 0.93) | 1.2 s``."""
        parts = [f"round {record.server_round}:"]
        for name, phase in (("train", record.train), ("evaluate", record.evaluate)):
            if phase is not None:
                parts.append(f"{name} {_phase(phase)} |")
        if record.server_metrics:
            parts.append(f"server ({_metrics(record.server_metrics)}) |")
        parts.append(f"{record.wall_time_s:.2f} s")
        self.log.write(" ".join(parts))
        for phase in (record.train, record.evaluate):
            for failure in phase.failures if phase is not None else ():
                self.log.write(f"  failed: {failure}")
        if record.server_round > 0 and self.round_done is not None:
            self.round_done(record.server_round)


def _phase(phase: PhaseResult) -> str:
    counts = f"{phase.num_ok} ok" + (f", {phase.num_failed} failed" if phase.num_failed else "")
    return f"{counts} ({_metrics(phase.metrics)})" if phase.metrics else counts


def _metrics(metrics: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {_number(v)}" for k, v in metrics.items())


def _number(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return str(value)
