"""The live view of a run on stderr, the log lines around it, and the summary at its end.

On a terminal each finished round becomes a row of a table under a progress bar for the
round in flight; in a Jupyter notebook an HTML table in the cell is updated in place, and
the run's curves follow its summary (``_notebook``); elsewhere (CI, a pipe, a file) each
round becomes one plain line, and nothing animates. ``pollinate run`` shows it, and so do
``run_simulation`` and ``start_server`` (``RunProgress``) unless told ``verbose=False``.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Protocol

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from ..records import ArrayRecord
from ._history import PhaseResult, Result, RoundRecord
from ._observer import RunObserver
from ._privacy import privacy_spent

__all__ = [
    "LineView",
    "ProgressView",
    "RunProgress",
    "TableView",
    "choose_columns",
    "format_duration",
    "format_number",
    "key_metrics",
    "log_handler",
    "print_summary",
    "progress_view",
]

log = logging.getLogger("pollinate.server")

MAX_COLUMNS = 4
"""The most metrics a round's row shows; metrics.jsonl and run.json hold them all."""

_PREFERRED = ("server.accuracy", "server.loss", "evaluate.accuracy", "evaluate.loss")
_EPSILON = "privacy.epsilon"
"""A DP round's epsilon so far (from its train metrics): always shown when there."""
_HIDDEN = ("num-examples",)


class ProgressView(RunObserver, Protocol):
    """A RunObserver that also shows what happens before round 1, and is closed at the end."""

    def status(self, text: str) -> None:
        """Say what is happening before the first round (loading the app, starting)."""

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        """A round begins."""

    def on_round(self, record: RoundRecord) -> None:
        """A round finished."""

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """The round's global model (nothing to show)."""

    def on_result(self, result: Result) -> None:
        """The strategy finished."""

    def close(self) -> None:
        """Stop animating and show whatever is still held back."""


def progress_view(console: Console) -> ProgressView:
    """A table with a progress bar on a terminal, plain lines anywhere else."""
    if console.is_terminal:
        return TableView(console)
    return LineView(lambda line: console.print(line, soft_wrap=True, markup=False))


def key_metrics(record: RoundRecord) -> dict[str, float]:
    """The round's numeric ``evaluate.*`` and ``server.*`` metrics, weights left out.

    A differentially private round adds its ``privacy.epsilon`` (a train metric).
    """
    phases: list[tuple[str, Mapping[str, Any]]] = [("server", record.server_metrics)]
    if record.evaluate is not None:
        phases.insert(0, ("evaluate", record.evaluate.metrics))
    out = {
        f"{phase}.{name}": float(value)
        for phase, metrics in phases
        for name, value in metrics.items()
        if name not in _HIDDEN and isinstance(value, (int, float))
    }
    epsilon = record.train.metrics.get(_EPSILON) if record.train is not None else None
    if isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool):
        out[_EPSILON] = float(epsilon)
    return out


def choose_columns(keys: Iterable[str], limit: int = MAX_COLUMNS) -> list[str]:
    """At most ``limit`` metric names: server and evaluate accuracy and loss first.

    ``privacy.epsilon``, when there, is always among them (last).
    """
    seen = list(dict.fromkeys(keys))
    ranked = [k for k in _PREFERRED if k in seen] + [
        k for k in seen if k not in _PREFERRED and k != _EPSILON
    ]
    if _EPSILON in seen:
        return [*ranked[: limit - 1], _EPSILON]
    return ranked[:limit]


def format_number(value: float) -> str:
    """Four significant digits: ``0.9028``, ``2.300``, ``1.234e+04``."""
    if not math.isfinite(value):
        return str(value)
    return f"{value:#.4g}"


def format_duration(seconds: float) -> str:
    """A simulated time, briefly: ``"42.0s"``, ``"12m 30s"``, ``"3h 05m"``, ``"2d 4h"``."""
    if not math.isfinite(seconds):
        return str(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def _simulated(record: RoundRecord) -> str:
    """``", sim 12m 30s"`` for a round with simulated time, else nothing."""
    at = record.simulated_time_s
    return "" if at is None else f", sim {format_duration(at)}"


def _phase_cell(phase: PhaseResult | None, compact: bool = False) -> str:
    """``"5 ok"``; with failures ``"4 ok 1 failed"``, or ``"4/5 ok"`` when compact."""
    if phase is None:
        return "-"
    if not phase.num_failed:
        return f"{phase.num_ok} ok"
    if compact:
        return f"{phase.num_ok}/{phase.num_ok + phase.num_failed} ok"
    return f"{phase.num_ok} ok {phase.num_failed} failed"


class LineView(RunObserver):
    """One plain line per round, for logs and pipes."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._num_rounds = 0

    def status(self, text: str) -> None:
        """Nothing to show: a log gets a line per round only."""

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        """Remember how many rounds there are."""
        self._num_rounds = num_rounds

    def on_round(self, record: RoundRecord) -> None:
        """Write the round's line."""
        metrics = key_metrics(record)
        values = [f"{key}={format_number(metrics[key])}" for key in choose_columns(metrics)]
        if record.server_round == 0:
            self._write(f"round 0 (initial model): {' '.join(values) or 'no metrics'}")
            return
        total = f"/{self._num_rounds}" if self._num_rounds else ""
        phases = f"train {_phase_cell(record.train)}, evaluate {_phase_cell(record.evaluate)}"
        line = f"round {record.server_round}{total}{_simulated(record)}: {phases}"
        self._write(f"{line}; {' '.join(values)}" if values else line)

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """Nothing to show."""

    def on_result(self, result: Result) -> None:
        """Nothing more to write: the summary follows."""

    def close(self) -> None:
        """Nothing to stop."""


class TableView(RunObserver):
    """A table row per finished round, under a progress bar for the round in flight.

    The columns are chosen once the first federated round is in (round 0, the initial
    model's evaluation, has only server metrics), so round 0's row waits for round 1's.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task: TaskID | None = None
        self._held: list[RoundRecord] = []
        self._columns: list[str] | None = None
        self._simulated = False  # a "sim" column, for a grid with simulated time

    def status(self, text: str) -> None:
        """Show ``text`` by the spinner until the first round starts."""
        self._update(description=text)

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        """Show the round in flight on the progress bar."""
        description = f"round {server_round}/{num_rounds}"
        self._update(description=description, total=num_rounds, completed=server_round - 1)

    def on_round(self, record: RoundRecord) -> None:
        """Print the round's row (round 0's waits for the next round's)."""
        self._held.append(record)
        if record.server_round == 0:
            return
        self._flush()
        if self._task is not None:
            self._update(completed=record.server_round)

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """Nothing to show."""

    def on_result(self, result: Result) -> None:
        """The run is over: stop the progress bar."""
        self.close()

    def close(self) -> None:
        """Print what is held back and remove the progress bar."""
        self._flush()
        if self._task is not None:
            self._progress.stop()
            self._task = None

    def _update(self, **changes: Any) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("", total=None)
        self._progress.update(self._task, **changes)

    def _flush(self) -> None:
        if not self._held:
            return
        if self._columns is None:
            self._columns = choose_columns(k for r in self._held for k in key_metrics(r))
            self._simulated = any(r.simulated_time_s is not None for r in self._held)
            header = ["round", "train", "evaluate", *self._columns, "time"]
            self._print_row([*header, "sim"] if self._simulated else header, "bold")
        for record in self._held:
            self._print_row(self._cells(record), "yellow" if _failed(record) else "")
        self._held.clear()

    def _cells(self, record: RoundRecord) -> list[str]:
        metrics = key_metrics(record)
        assert self._columns is not None
        values = [format_number(metrics[k]) if k in metrics else "-" for k in self._columns]
        time = f"{record.wall_time_s:.2f} s" if record.server_round else "-"
        train, evaluate = _phase_cell(record.train, True), _phase_cell(record.evaluate, True)
        cells = [str(record.server_round), train, evaluate, *values, time]
        if not self._simulated:
            return cells
        at = record.simulated_time_s
        return [*cells, "-" if at is None or not record.server_round else format_duration(at)]

    def _print_row(self, cells: list[str], style: str) -> None:
        assert self._columns is not None
        widths = [5, 9, 9, *(max(len(c), 9) for c in self._columns), 8, *[8] * self._simulated]
        line = "  ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True))
        text = Text(line, style)
        self._console.print(text, no_wrap=True, overflow="ellipsis")


def _failed(record: RoundRecord) -> bool:
    return any(p is not None and p.num_failed for p in (record.train, record.evaluate))


class _PlainFormatter(logging.Formatter):
    """``warning: round 2 train: set aside node 3: ...``."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {super().format(record)}"


def log_handler(console: Console, level: int) -> logging.Handler:
    """A handler that shows log records of ``level`` and above on ``console``, view-safe.

    On a terminal rich prints them above the progress bar; elsewhere each is one plain line.
    """
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(_PlainFormatter("%(message)s"))
    handler.setLevel(level)
    return handler


def print_summary(console: Console, result: Result, wall_time_s: float) -> None:
    """The end of a run: rounds, time, final metrics (key ones first), privacy spent, model."""
    rounds = sum(record.server_round > 0 for record in result.rounds)
    simulated = result.simulated_time_s
    console.print(
        f"[green]Finished[/] {rounds} round{'' if rounds == 1 else 's'} in "
        f"{result.rounds_time_s:.2f} s ({wall_time_s:.2f} s with start-up)"
        + ("" if simulated is None else f", {format_duration(simulated)} simulated"),
        soft_wrap=True,
    )
    if result.stop_reason is not None:
        console.print(f"[yellow]Stopped early:[/] {escape(result.stop_reason)}", soft_wrap=True)
    final = {k: v for k, v in result.final_metrics().items() if isinstance(v, (int, float))}
    keys = [k for k in final if not k.startswith("train.") and not k.endswith("num-examples")]
    for key in choose_columns(keys, limit=len(keys)):  # every metric, the key ones first
        line = f"  {key:<32} {format_number(float(final[key]))}"
        console.print(line, soft_wrap=True, markup=False)
    spent = privacy_spent(result.metrics("train"))
    for label, text in spent.lines() if spent else []:
        console.print(f"  {label:<32} {text}", soft_wrap=True, markup=False)
    console.print(f"  {'model':<32} {_model_size(result.arrays)}", soft_wrap=True, markup=False)


def _model_size(arrays: ArrayRecord) -> str:
    """``"4 arrays, 101,770 values (407.1 kB)"``."""
    values = sum(math.prod(array.shape) for array in arrays.values())
    count = len(arrays)
    return f"{count} array{'' if count == 1 else 's'}, {values:,} values ({_bytes(arrays.nbytes)})"


def _bytes(count: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


class RunProgress:
    """What a library call (``run_simulation``, ``start_server``) shows of its run on stderr.

    With ``verbose`` the live view runs as one more observer and ``finished`` prints the
    summary; the view is closed however the call ends. While it runs, WARNING records of
    ``pollinate.*`` loggers show on the same console, unless logging is configured (a handler
    on the way to the root logger): then the user's configuration decides. Without
    ``verbose`` nothing is shown and nothing is changed.
    """

    def __init__(self, verbose: bool, status: str) -> None:
        from ._notebook import in_notebook

        self._console = Console(stderr=True, highlight=False) if verbose else None
        self._notebook = verbose and in_notebook()
        self._status = status
        self._view: ProgressView | None = None
        self._handler: logging.Handler | None = None
        self._began = time.perf_counter()

    @property
    def observers(self) -> list[RunObserver]:
        """The observers to add to the run's: the view, if any."""
        return [] if self._view is None else [self._view]

    def __enter__(self) -> RunProgress:
        self._began = time.perf_counter()
        if self._console is not None:
            logger = logging.getLogger("pollinate")
            if not logger.hasHandlers():
                self._handler = log_handler(self._console, logging.WARNING)
                logger.addHandler(self._handler)
            self._view = self._new_view(self._console)
            self._view.status(self._status)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._close()

    def finished(self, result: Result) -> Result:
        """Close the view and print the run's summary; returns ``result``."""
        self._close()
        if self._console is not None:
            print_summary(self._console, result, time.perf_counter() - self._began)
        if self._notebook and result.rounds and importlib.util.find_spec("matplotlib"):
            from ._notebook import show_figures

            try:  # the run is done: a plot that cannot be drawn must not lose its result
                show_figures([result.plot()])
            except Exception as err:
                log.warning("could not draw the run's curves: %s: %s", type(err).__name__, err)
        return result

    def _new_view(self, console: Console) -> ProgressView:
        if self._notebook:
            from ._notebook import NotebookView

            return NotebookView()
        return progress_view(console)

    def _close(self) -> None:
        if self._view is not None:
            self._view.close()
            self._view = None
        if self._handler is not None:
            logging.getLogger("pollinate").removeHandler(self._handler)
            self._handler = None
