"""A comparison's files: the table (Markdown, JSON), curves and one confusion matrix per model.

matplotlib is imported only here, when the files are written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._table import Comparison, ModelRun, percent

__all__ = ["ComparisonFiles", "write_comparison"]

_FEDERATED_COLOR = "black"
_MAX_ANNOTATED_CLASSES = 12
"""Confusion matrices with more classes than this show colours only, no numbers."""


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
    """Write ``comparison.md``, ``comparison.json``, ``curves.png`` and ``confusion/*.png``.

    ``about`` (the app, federation and run config, say) is kept at the top of the JSON file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table_md = out / "comparison.md"
    table_md.write_text(comparison.to_markdown(), encoding="utf-8")
    table_json = out / "comparison.json"
    record = {**(about or {}), **comparison.to_json(), "curves": comparison.curves_json()}
    table_json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    plt = _pyplot()
    curves = out / "curves.png"
    _plot_curves(plt, comparison, curves)
    confusion_dir = out / "confusion"
    confusion_dir.mkdir(exist_ok=True)
    confusion = tuple(
        _plot_confusion(plt, comparison, model, confusion_dir / f"{model.name}.png")
        for model in comparison.models
    )
    return ComparisonFiles(table_md, table_json, curves, confusion)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_curves(plt: Any, comparison: Comparison, path: Path) -> None:
    """Test accuracy (and loss, if known) per round: a line per model, federated in black."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    has_loss = all(s.loss is not None for m in comparison.models for s in m.curve)
    panels = ["accuracy", "loss"] if has_loss else ["accuracy"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, panel in zip(axes.flat, panels, strict=True):
        for model in comparison.models:
            rounds = [s.server_round for s in model.curve]
            values = [s.accuracy if panel == "accuracy" else s.loss for s in model.curve]
            federated = model.partition is None
            ax.plot(
                rounds,
                values,
                marker="o",
                linewidth=2.5 if federated else 1.3,
                linestyle="-" if federated else "--",
                color=_FEDERATED_COLOR if model.partition is None else colors(model.partition % 10),
                label=_legend(comparison, model),
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _legend(comparison: Comparison, model: ModelRun) -> str:
    accuracy = percent(model.final.accuracy())
    if model.partition is None:
        return f"federated ({accuracy})"
    return f"isolated, partition {model.partition} ({accuracy})"


def _plot_confusion(plt: Any, comparison: Comparison, model: ModelRun, path: Path) -> Path:
    """Row-normalised confusion matrix; labels the model never trained on are marked red."""
    classes = comparison.classes
    counts = comparison.confusion(model)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    never_seen = (
        set(comparison.missing_labels().get(model.partition, ()))
        if model.partition is not None
        else set()
    )
    size = max(4.8, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of the true label's examples")
    ticks = range(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes])
    ax.set_yticks(ticks, [str(c) for c in classes])
    for tick in (*ax.get_xticklabels(), *ax.get_yticklabels()):
        if int(tick.get_text()) in never_seen:
            tick.set_color("red")
            tick.set_fontweight("bold")
    if len(classes) <= _MAX_ANNOTATED_CLASSES:
        for row in ticks:
            for col in ticks:
                if counts[row, col]:
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
    title = f"{_legend(comparison, model)}"
    if never_seen:
        title += "\nred: labels it never trained on"
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
