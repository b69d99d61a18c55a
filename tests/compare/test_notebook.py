"""run_simulation and run_comparison "in a notebook": a fake kernel records what they show."""

from __future__ import annotations

from typing import Any

import pytest

from pollinate import run_simulation
from pollinate.compare import run_comparison
from pollinate.errors import ConfigError
from pollinate.server import _notebook

from .conftest import BLOBS_CONFIG

pytest.importorskip("matplotlib")


class Kernel:
    """Stands in for IPython's display functions; says whether it was asked anything."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, Any]] = []

    def display(self, obj: Any, display_id: str | None = None) -> None:
        self.shown.append(("display", obj))

    def update_display(self, obj: Any, display_id: str | None = None) -> None:
        self.shown.append(("update", obj))

    def html(self) -> list[str]:
        return [o._repr_html_() for _, o in self.shown if hasattr(o, "_repr_html_")]

    def pngs(self) -> list[bytes]:
        return [o._repr_png_() for _, o in self.shown if hasattr(o, "_repr_png_")]


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Kernel:
    """A notebook kernel as far as pollinate can tell."""
    fake = Kernel()
    monkeypatch.setattr(_notebook, "in_notebook", lambda: True)
    monkeypatch.setattr("pollinate.compare._runs.in_notebook", lambda: True)
    monkeypatch.setattr(_notebook, "_ipython_display", lambda: (fake.display, fake.update_display))
    return fake


def test_run_simulation_shows_its_rounds_live_then_its_curves(blobs, kernel: Kernel) -> None:
    import matplotlib

    backend = matplotlib.get_backend()
    run_simulation(blobs.server, blobs.client, num_nodes=3, run_config=BLOBS_CONFIG)
    assert kernel.shown[0][0] == "display" and ("update", kernel.shown[1][1]) in kernel.shown
    live = [h for h in kernel.html() if "<b>pollinate</b>" in h]
    assert "round 2/4 running" in "".join(live) and "finished" in live[-1]
    assert len(kernel.pngs()) == 1  # the curves, after the summary
    assert matplotlib.get_backend() == backend  # a notebook's backend is left alone


def test_run_comparison_shows_training_then_table_curves_and_confusion(
    blobs, kernel: Kernel
) -> None:
    comparison = run_comparison(
        blobs.server, blobs.client, blobs.predict, num_nodes=3, run_config=BLOBS_CONFIG
    )
    html = kernel.html()
    assert any("training 3 isolated models" in h for h in html)  # isolated training, live
    assert html[-1] == comparison.to_html() and "<b>0.0%</b>" in html[-1]  # own missing labels
    assert len(kernel.pngs()) == 2  # curves, and the confusion matrices side by side
    assert len(comparison.plot_confusion().axes) == 2 * len(comparison.models)  # with colour bars


def test_nothing_is_shown_outside_a_notebook_or_when_quiet(
    blobs, kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_comparison(
        blobs.server,
        blobs.client,
        blobs.predict,
        num_nodes=3,
        run_config=BLOBS_CONFIG,
        verbose=False,
    )
    monkeypatch.setattr("pollinate.compare._runs.in_notebook", lambda: False)
    run_comparison(blobs.server, blobs.client, blobs.predict, num_nodes=3, run_config=BLOBS_CONFIG)
    assert kernel.shown == []


def test_an_unknown_model_name_is_refused_by_name(blobs) -> None:
    comparison = run_comparison(
        blobs.server, blobs.client, blobs.predict, num_nodes=3, run_config=BLOBS_CONFIG
    )
    with pytest.raises(ConfigError, match=r"no model named 'isolated-9'.*isolated-0"):
        comparison.plot_confusion(["isolated-9"])
    assert len(comparison.plot_confusion(["federated"]).axes) == 2


def test_writing_plots_leaves_pyplot_s_backend_alone(blobs, tmp_path) -> None:
    """A notebook's inline backend survives a comparison's files (they were drawn under Agg)."""
    import matplotlib

    from pollinate.compare import write_comparison

    comparison = run_comparison(
        blobs.server, blobs.client, blobs.predict, num_nodes=3, run_config=BLOBS_CONFIG
    )
    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        write_comparison(comparison, tmp_path)
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert (tmp_path / "confusion" / "federated.png").read_bytes()[:4] == b"\x89PNG"


def test_a_comparison_that_fails_says_so_in_its_live_view(blobs, kernel: Kernel) -> None:
    def predict(arrays: Any, run_config: Any) -> Any:
        raise RuntimeError("no test set")

    with pytest.raises(Exception, match="no test set"):
        run_comparison(blobs.server, blobs.client, predict, num_nodes=3, run_config=BLOBS_CONFIG)
    assert "stopped before the end" in kernel.html()[-1]
    assert kernel.pngs() == []
