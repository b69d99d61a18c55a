"""A run's live view in a Jupyter notebook: one HTML table in the cell, updated in place.

rich prints each line of a run as one more output in a notebook, nothing updates in place,
and a progress bar needs ipywidgets. So in a Jupyter kernel the view is an HTML table shown
once with a display id (IPython's ``display``) and redrawn with ``update_display`` as each
round starts and ends. IPython is imported only inside a kernel, where it is already loaded.
"""

from __future__ import annotations

import html
import io
import sys
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ConfigError
from ..records import ArrayRecord
from ._history import Result, RoundRecord
from ._observer import RunObserver
from ._progress import (
    _failed,
    _phase_cell,
    choose_columns,
    format_duration,
    format_number,
    key_metrics,
)

__all__ = ["NotebookView", "in_notebook", "render_rounds", "show_figures", "show_html"]

NOTEBOOK_COLUMNS = 8
"""The most metrics a round's row shows in a notebook: wider than a terminal's four, so a
comparison's accuracy on each client's missing labels fits."""

DisplayFn = Callable[..., Any]
"""``IPython.display.display`` or ``update_display``: ``(obj, display_id=...)``."""


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (IPython's ZMQ shell, not a terminal IPython)."""
    if "IPython" not in sys.modules:  # a kernel has loaded it long before any run
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and any(
        cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__
    )


class _Html:
    """HTML for IPython's display (what ``IPython.display.HTML`` is, without importing it).

    ``plain`` is the ``text/plain`` form, for a viewer that shows no HTML.
    """

    def __init__(self, text: str, plain: str) -> None:
        self.text = text
        self.plain = plain

    def _repr_html_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.plain


class _Png:
    """PNG bytes for IPython's display, shown as an ``image/png`` output."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _repr_png_(self) -> bytes:
        return self.data

    def __repr__(self) -> str:
        return "<figure>"


def _ipython_display() -> tuple[DisplayFn, DisplayFn]:
    """IPython's display functions; without IPython, one error naming the extra."""
    try:
        from IPython.display import display, update_display
    except ImportError:
        raise ConfigError(
            "showing results in a notebook needs IPython: pip install 'pollinate[notebook]' "
            "(outside a notebook, write the files instead: write_comparison or pollinate report)"
        ) from None
    return display, update_display


class NotebookView(RunObserver):
    """The rounds so far as an HTML table, with a status line, redrawn in place.

    ``display`` and ``update_display`` default to IPython's; tests pass their own.
    """

    def __init__(
        self, display: DisplayFn | None = None, update_display: DisplayFn | None = None
    ) -> None:
        if display is None or update_display is None:
            display, update_display = _ipython_display()
        self._display = display
        self._update_display = update_display
        self._id: str | None = None
        self._status = ""
        self._rounds: list[RoundRecord] = []
        self._num_rounds = 0
        self._ended = False  # the strategy returned its result

    def status(self, text: str) -> None:
        """Say what is happening now (starting, a round in flight, isolated training)."""
        self._status = text
        self._show()

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        """The round in flight becomes the status line."""
        self._num_rounds = num_rounds
        self.status(f"round {server_round}/{num_rounds} running")

    def on_round(self, record: RoundRecord) -> None:
        """Add the round's row."""
        self._rounds.append(record)
        done = record.server_round
        self.status(f"round {done}/{self._num_rounds} done" if done else "initial model scored")

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """Nothing to show."""

    def on_result(self, result: Result) -> None:
        """Note the end; whoever runs the view closes it (a comparison goes on after this)."""
        self._ended = True

    def close(self) -> None:
        """Say the run is over, or that it stopped early (an error follows); the table stays."""
        if self._id is not None:
            self.status("finished" if self._ended else "stopped before the end (error below)")

    def _show(self) -> None:
        done = sum(r.server_round > 0 for r in self._rounds)
        plain = f"pollinate: {self._status} ({done} round{'' if done == 1 else 's'} done)"
        page = _Html(render_rounds(self._rounds, self._status), plain)
        if self._id is None:
            self._id = uuid.uuid4().hex
            self._display(page, display_id=self._id)
        else:
            self._update_display(page, display_id=self._id)


def render_rounds(rounds: list[RoundRecord], status: str) -> str:
    """The status line and a table with a row per round, every value escaped."""
    line = f"<p><b>pollinate</b>: {html.escape(status)}</p>"
    if not rounds:
        return f"<div>{line}</div>"
    columns = choose_columns((k for r in rounds for k in key_metrics(r)), NOTEBOOK_COLUMNS)
    simulated = any(r.simulated_time_s is not None for r in rounds)
    header = ["round", "train", "evaluate", *columns, "time", *["sim"] * simulated]
    rows = []
    for record in rounds:
        metrics = key_metrics(record)
        cells = [
            str(record.server_round),
            _phase_cell(record.train, True),
            _phase_cell(record.evaluate, True),
            *(format_number(metrics[k]) if k in metrics else "-" for k in columns),
            f"{record.wall_time_s:.2f} s" if record.server_round else "-",
        ]
        if simulated:
            at = record.simulated_time_s
            cells.append("-" if at is None or not record.server_round else format_duration(at))
        rows.append((cells, _failed(record)))
    return f"<div>{line}{_table(header, rows)}</div>"


def _table(header: list[str], rows: Iterable[tuple[list[str], bool]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        ('<tr style="color:#b58900">' if failed else "<tr>")
        + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        + "</tr>"
        for cells, failed in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def show_figures(figures: Iterable[Any], display: DisplayFn | None = None, dpi: int = 110) -> None:
    """Show matplotlib figures in the cell's output, each as an ``image/png``.

    Rendered here rather than left to IPython's matplotlib support, which shows a figure
    only once pyplot's inline backend is loaded.
    """
    show = display if display is not None else _ipython_display()[0]
    for figure in figures:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi)
        show(_Png(buffer.getvalue()))


def show_html(text: str, plain: str, display: DisplayFn | None = None) -> None:
    """Show trusted HTML (already escaped by its maker) in the cell's output; ``plain`` too."""
    show = display if display is not None else _ipython_display()[0]
    show(_Html(text, plain))
