"""A comparison's files: the table (Markdown, JSON), curves and one confusion matrix per model.

The figures are drawn by ``curves_figure`` and ``confusion_figure``, which a notebook shows
inline too. matplotlib is imported only here, when a figure is drawn, and only through its
object API (``matplotlib.figure.Figure``): pyplot's backend, a notebook's included, is left alone.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ._table import Comparison, ModelRun, percent

__all__ = [
    "ComparisonFiles",
    "confusion_figure",
    "curves_figure",
    "require_plotting",
    "write_comparison",
]

_MAX_ANNOTATED_CLASSES = 12
"""Confusion matrices with more classes than this show colours only, no numbers."""
_MAX_LABELLED_CLASSES = 40
"""... and with more than this, no tick labels either."""
_MAX_FIGURE_INCHES = 16.0
DPI = 110
"""Resolution of the written PNGs and of the notebook's inline ones."""
_MAX_COLORED_MODELS = 10
"""With more isolated models than this, curves draw them all in grey."""


@dataclass(frozen=True, slots=True)
class ComparisonFiles:
    """Where a comparison's files went."""

    table_md: Path
    table_json: Path
    curves: Path
    confusion: tuple[Path, ...]


def write_comparison(
    comparison: Comparison, out_dir: str | Path, about: dict[str, Any] | None = None
) -> ComparisonFiles:
    """Write ``comparison.md``, ``curves.png``, ``confusion/*.png`` and ``comparison.json``.

    ``about`` (the app, federation and run config, say) is kept at the top of the JSON file,
    which is written last: its presence marks a finished comparison.
    """
    require_plotting()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table_md = out / "comparison.md"
    table_md.write_text(comparison.to_markdown(), encoding="utf-8")
    curves = out / "curves.png"
    curves_figure(comparison).savefig(curves, dpi=DPI)
    confusion_dir = out / "confusion"
    confusion_dir.mkdir(exist_ok=True)
    confusion = tuple(confusion_dir / f"{model.name}.png" for model in comparison.models)
    for model, path in zip(comparison.models, confusion, strict=True):
        confusion_figure(comparison, [model]).savefig(path, dpi=DPI)
    table_json = out / "comparison.json"
    record = {**(about or {}), **comparison.to_json(), "curves": comparison.curves_json()}
    table_json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return ComparisonFiles(table_md, table_json, curves, confusion)


def require_plotting() -> None:
    """Raise a ConfigError saying what to install if matplotlib is missing (check it early)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError(
            "writing the comparison's plots needs matplotlib: pip install 'pollinate[plot]'"
        )


def curves_figure(comparison: Comparison) -> Any:
    """Test accuracy (and loss, where known) per round: a line per model, federated in black.

    With many isolated models they are drawn as thin grey lines under one legend entry.
    Returns a ``matplotlib.figure.Figure``.
    """
    require_plotting()
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    has_loss = any(s.loss is not None for m in comparison.models for s in m.curve)
    panels = ["accuracy", "loss"] if has_loss else ["accuracy"]
    fig = Figure(figsize=(6 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    colors = colormaps["tab10"]
    crowded = len(comparison.isolated) > _MAX_COLORED_MODELS
    for ax, panel in zip(axes.flat, panels, strict=True):
        for model in comparison.models:
            label: str | None
            points = [
                (s.server_round, s.accuracy if panel == "accuracy" else s.loss) for s in model.curve
            ]
            rounds, values = zip(*[(r, v) for r, v in points if v is not None], strict=True)
            if model.partition is None:
                style = {"color": "black", "linewidth": 2.5, "marker": "o", "zorder": 3}
                label = _legend(model)
            elif crowded:
                style = {"color": "grey", "linewidth": 0.8, "alpha": 0.5}
                first = model is comparison.isolated[0]
                label = f"isolated ({len(comparison.isolated)} models)" if first else None
            else:
                style = {"color": colors(model.partition % 10), "linewidth": 1.3, "marker": "o"}
                label = _legend(model)
            ax.plot(
                rounds,
                values,
                linestyle="-" if model.partition is None else "--",
                label=label,
                **style,
            )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel == "accuracy":
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            ax.set_ylim(0, 1)
        ax.set_title(f"test {panel}")
        ax.set_xlabel("round (0 = initial model)")
        ax.set_ylabel(panel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Federated vs isolated training, same local budget")
    fig.tight_layout()
    return fig


def _legend(model: ModelRun) -> str:
    accuracy = percent(model.final.accuracy())
    if model.partition is None:
        return f"federated ({accuracy})"
    return f"isolated, partition {model.partition} ({accuracy})"


def confusion_figure(comparison: Comparison, models: Sequence[ModelRun] | None = None) -> Any:
    """Row-normalised confusion matrices side by side, one per model (default: every model).

    Labels a model never trained on are marked red. Returns a ``matplotlib.figure.Figure``.
    """
    require_plotting()
    from matplotlib.figure import Figure

    chosen = list(comparison.models if models is None else models)
    size = min(_MAX_FIGURE_INCHES, max(4.8, 0.45 * len(comparison.classes) + 2))
    fig = Figure(figsize=((size + 1) * len(chosen), size))
    for ax, model in zip(fig.subplots(1, len(chosen), squeeze=False).flat, chosen, strict=True):
        _draw_confusion(fig, ax, comparison, model)
    fig.tight_layout()
    return fig


def _draw_confusion(fig: Any, ax: Any, comparison: Comparison, model: ModelRun) -> None:
    """One model's matrix on ``ax``, with its colour bar."""
    classes = comparison.classes
    counts = comparison.confusion(model)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    missing = comparison.missing_labels()
    never_seen = set(missing.get(model.partition, ())) if model.partition is not None else set()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of the true label's examples")
    if len(classes) <= _MAX_LABELLED_CLASSES:
        ticks = range(len(classes))
        ax.set_xticks(ticks, [str(c) for c in classes])
        ax.set_yticks(ticks, [str(c) for c in classes])
        for label, x_tick, y_tick in zip(
            classes, ax.get_xticklabels(), ax.get_yticklabels(), strict=True
        ):
            if label in never_seen:
                for tick in (x_tick, y_tick):
                    tick.set_color("red")
                    tick.set_fontweight("bold")
    if len(classes) <= _MAX_ANNOTATED_CLASSES:
        for row, col in zip(*np.nonzero(counts), strict=True):
            ax.text(
                col,
                row,
                f"{rates[row, col]:.0%}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[row, col] > 0.5 else "black",
            )
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    title = _legend(model)
    if never_seen and len(classes) <= _MAX_LABELLED_CLASSES:
        title += "\nred: labels it never trained on"
    ax.set_title(title)
