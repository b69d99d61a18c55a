"""The notebook view, without a kernel: IPython's display functions are fakes that record.

(tests/examples/test_notebook.py runs the real thing in a Jupyter kernel.)
"""

from __future__ import annotations

import subprocess
import sys
import types
from typing import Any

import pytest

from pollinate.errors import ConfigError
from pollinate.records import ArrayRecord
from pollinate.server import Result
from pollinate.server._history import PhaseResult, RoundRecord
from pollinate.server._notebook import NotebookView, in_notebook, render_rounds, show_figures


class FakeDisplay:
    """Records ``display`` and ``update_display`` calls as IPython would receive them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, str | None]] = []

    def display(self, obj: Any, display_id: str | None = None) -> None:
        self.calls.append(("display", obj, display_id))

    def update_display(self, obj: Any, display_id: str | None = None) -> None:
        self.calls.append(("update", obj, display_id))

    def html(self, index: int = -1) -> str:
        return str(self.calls[index][1]._repr_html_())


def record(server_round: int, **server: float) -> RoundRecord:
    train = PhaseResult({}, 3) if server_round else None
    return RoundRecord(server_round, train, None, server, wall_time_s=0.5)


def test_the_view_is_shown_once_then_updated_in_place() -> None:
    fake = FakeDisplay()
    view = NotebookView(fake.display, fake.update_display)
    view.status("starting 3 nodes")
    view.on_round(record(0, accuracy=0.1))
    view.on_round_start(1, 2)
    view.on_round(record(1, accuracy=0.5, loss=1.25))
    view.on_result(Result(ArrayRecord()))
    view.close()
    kinds = [kind for kind, _, _ in fake.calls]
    assert kinds == ["display", *["update"] * (len(kinds) - 1)]
    assert len({display_id for _, _, display_id in fake.calls}) == 1  # one display, redrawn
    assert "round 1/2 running" in fake.html(2)
    final = fake.html()
    assert "finished" in final and "<th>server.accuracy</th>" in final
    assert "<td>0.5000</td>" in final and "<td>1.250</td>" in final
    assert repr(fake.calls[-1][1]) == "pollinate: finished (1 round done)"


def test_a_run_on_a_simulated_clock_gets_a_sim_column() -> None:
    rounds = [RoundRecord(0, simulated_time_s=0.0), RoundRecord(1, simulated_time_s=750.0)]
    page = render_rounds(rounds, "finished")
    assert "<th>sim</th>" in page and "<td>12m 30s</td>" in page


def test_what_nodes_report_is_escaped() -> None:
    fake = FakeDisplay()
    view = NotebookView(fake.display, fake.update_display)
    hostile = "<img src=x onerror=alert(1)>"
    view.on_round(RoundRecord(1, PhaseResult({hostile: 1.0}, 1)))
    view.status(hostile)
    assert "<img" not in fake.html() and "&lt;img" in fake.html()


def test_figures_are_shown_as_png() -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    fake = FakeDisplay()
    figure = Figure()
    figure.subplots().plot([1, 2])
    show_figures([figure], fake.display)
    (kind, shown, _), *_ = fake.calls
    assert kind == "display" and shown._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_only_a_jupyter_kernel_counts_as_a_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not in_notebook()  # pytest: no kernel (and IPython, if loaded, has no shell)

    class ZMQInteractiveShell:  # ipykernel's shell, as far as the check looks
        pass

    class ColabShell(ZMQInteractiveShell):  # a subclass is a kernel too
        pass

    class TerminalInteractiveShell:
        pass

    fake = types.ModuleType("IPython")
    monkeypatch.setitem(sys.modules, "IPython", fake)
    for shell, expected in (
        (ZMQInteractiveShell(), True),
        (ColabShell(), True),
        (TerminalInteractiveShell(), False),
        (None, False),
    ):
        fake.get_ipython = lambda shell=shell: shell  # type: ignore[attr-defined]
        assert in_notebook() is expected


def test_result_plot_draws_each_metric() -> None:
    pytest.importorskip("matplotlib")
    result = Result(ArrayRecord(), [record(0, accuracy=0.1), record(1, accuracy=0.5, loss=1.0)])
    figure = result.plot()
    titles = {ax.get_title() for ax in figure.axes if ax.get_visible()}
    assert titles == {"accuracy", "loss"}
    with pytest.raises(ConfigError, match="no simulated time"):
        result.plot(against_time=True)


def test_a_metric_name_that_looks_like_tex_is_drawn_as_text() -> None:
    pytest.importorskip("matplotlib")
    name = r"a $\frac b$"  # mathtext would fail on it, after the run was done
    result = Result(ArrayRecord(), [record(0, **{name: 0.1}), record(1, **{name: 0.5})])
    figure = result.plot()
    figure.canvas.draw()
    assert {ax.get_title() for ax in figure.axes if ax.get_visible()} == {name}


def test_showing_without_ipython_is_one_error_naming_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "IPython.display", None)
    with pytest.raises(ConfigError, match=r"pollinate\[notebook\]"):
        show_figures([])


def test_importing_pollinate_loads_neither_ipython_nor_matplotlib() -> None:
    code = (
        "import sys, pollinate, pollinate.compare, pollinate.report, pollinate.server._notebook\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('IPython', 'matplotlib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_run_that_ends_in_an_error_says_it_stopped() -> None:
    fake = FakeDisplay()
    view = NotebookView(fake.display, fake.update_display)
    view.on_round_start(1, 3)
    view.close()  # no result came: the run raised
    assert "stopped before the end" in fake.html()
