"""A heatmap of examples per class and partition, to see a split's skew at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...errors import ConfigError
from ._stats import partition_stats

ANNOTATE_UP_TO = 20
"""Cell counts are written in the cells when both sides of the matrix are at most this."""
TICKS_UP_TO = 40


def _import_figure() -> tuple[Any, Any]:
    """The matplotlib Figure and Agg canvas, imported only when a plot is asked for."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError(
            "plot_partition_heatmap needs matplotlib: pip install 'pollinate[plot]'"
        ) from exc
    return Figure, FigureCanvasAgg


def _annotate(ax: Any, counts: NDArray[np.int64]) -> None:
    """Write each count in its cell, light on dark cells and dark on light ones."""
    threshold = counts.max() / 2 if counts.size else 0
    for (row, col), value in np.ndenumerate(counts):
        color = "white" if value < threshold else "black"
        ax.text(col, row, str(value), ha="center", va="center", color=color, fontsize=9)


def _ticks(ax: Any, labels: ArrayLike, num_parts: int, names: Sequence[str] | None) -> None:
    """Label every class (its label, or its name) and partition while they fit."""
    classes = np.unique(np.asarray(labels))
    if names is not None:  # names can be long: slant them
        ax.set_xticks(range(len(classes)), [str(n) for n in names], rotation=45, ha="right")
    elif len(classes) <= TICKS_UP_TO:
        ax.set_xticks(range(len(classes)), [str(c) for c in classes])
    if num_parts <= TICKS_UP_TO:
        ax.set_yticks(range(num_parts), [str(p) for p in range(num_parts)])


def plot_partition_heatmap(
    labels: ArrayLike,
    parts: Sequence[ArrayLike],
    path: str | PathLike[str] | None = None,
    *,
    title: str = "Examples per class in each partition",
    class_names: Sequence[str] | None = None,
) -> Any:
    """A matplotlib Figure: partitions (rows) x classes (columns), coloured by example count.

    Saved as PNG (Agg, no display needed) when ``path`` is given; ``class_names`` label columns.
    """
    counts = partition_stats(labels, parts)
    if class_names is not None and len(class_names) != counts.shape[1]:
        raise ConfigError(
            f"class_names has {len(class_names)} names for {counts.shape[1]} classes; "
            "give one name per distinct label, in sorted label order"
        )
    figure_cls, canvas_cls = _import_figure()
    height = min(12.0, 2.0 + 0.4 * counts.shape[0])
    width = min(16.0, 3.0 + 0.6 * counts.shape[1])
    fig = figure_cls(figsize=(max(width, 6.0), max(height, 4.0)), layout="constrained")
    canvas_cls(fig)
    ax = fig.add_subplot()
    image = ax.imshow(counts, aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="examples")
    ax.set(title=title, xlabel="class", ylabel="partition")
    _ticks(ax, labels, counts.shape[0], class_names)
    if max(counts.shape) <= ANNOTATE_UP_TO:
        _annotate(ax, counts)
    if path is not None:
        fig.savefig(path, format="png", dpi=100)
    return fig
