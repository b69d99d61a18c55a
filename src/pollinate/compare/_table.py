"""The comparison's numbers: each model's accuracy overall and on each node's missing labels."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..records import ArrayRecord
from ._hooks import Predictions

__all__ = ["Cell", "Comparison", "ModelRun", "RoundScore", "Table"]

MAX_SUBSET_COLUMNS = 8
"""Up to this many partitions missing labels, the table has a column for each."""


@dataclass(frozen=True, slots=True)
class RoundScore:
    """A model's test accuracy (and loss, when ``predict`` gives one) after one round."""

    server_round: int
    accuracy: float
    loss: float | None = None

    @classmethod
    def of(cls, server_round: int, predictions: Predictions) -> RoundScore:
        """The score of ``predictions`` made after ``server_round``."""
        return cls(server_round, predictions.accuracy(), predictions.loss)


@dataclass(frozen=True, slots=True, eq=False)
class ModelRun:
    """One trained model: ``federated``, or ``isolated-P`` trained on partition P alone.

    ``rounds_trained`` is how many rounds trained it: for an isolated model, the rounds in
    which its node trained in the federated run.
    """

    name: str
    partition: int | None
    curve: tuple[RoundScore, ...]
    final: Predictions
    arrays: ArrayRecord
    rounds_trained: int


@dataclass(frozen=True, slots=True)
class Comparison:
    """Isolated models (one per partition) and the federated model, scored on one test set.

    ``label_counts`` maps each partition to how many training examples of each label it
    holds; it is None when the ClientApp does not answer ``query.label-counts``, and then
    the comparison has overall accuracy only.
    """

    models: tuple[ModelRun, ...]
    label_counts: dict[int, dict[int, int]] | None
    num_rounds: int

    @property
    def federated(self) -> ModelRun:
        """The federated model."""
        return next(m for m in self.models if m.partition is None)

    @property
    def isolated(self) -> list[ModelRun]:
        """The isolated models, by partition."""
        return [m for m in self.models if m.partition is not None]

    @property
    def classes(self) -> list[int]:
        """Every label of the test set and every label predicted, sorted."""
        labels = {int(v) for v in np.unique(self.federated.final.labels)}
        return sorted(labels | _predicted(self.models))

    def missing_labels(self) -> dict[int, tuple[int, ...]]:
        """The test-set labels each partition never trains on (partitions that miss some)."""
        if self.label_counts is None:
            return {}
        test_labels = {int(v) for v in np.unique(self.federated.final.labels)}
        missing = {
            partition: tuple(sorted(label for label in test_labels if not counts.get(label)))
            for partition, counts in self.label_counts.items()
        }
        return {partition: labels for partition, labels in missing.items() if labels}

    def accuracy_on_missing(self, model: ModelRun) -> dict[int, float]:
        """``model``'s accuracy on each partition's missing labels."""
        return {
            partition: model.final.accuracy(frozenset(labels))
            for partition, labels in self.missing_labels().items()
        }

    def confusion(self, model: ModelRun) -> NDArray[np.int64]:
        """Counts of (true label, predicted label) over ``classes``, true labels as rows."""
        classes = self.classes
        index = {label: i for i, label in enumerate(classes)}
        matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
        rows = np.array([index[int(v)] for v in model.final.labels])
        cols = np.array([index[int(v)] for v in model.final.predicted])
        np.add.at(matrix, (rows, cols), 1)
        return matrix

    def num_examples(self, model: ModelRun) -> int | None:
        """How many training examples trained ``model`` (None when unknown).

        An isolated model's partition size; for the federated model, the sum over the
        partitions that trained in it.
        """
        if self.label_counts is None:
            return None
        if model.partition is not None:
            counts = self.label_counts.get(model.partition)
            return None if counts is None else sum(counts.values())
        sizes = [self.num_examples(m) for m in self.isolated if m.rounds_trained > 0]
        return sum(size for size in sizes if size is not None)

    def to_json(self) -> dict[str, Any]:
        """The table as JSON: each model's accuracy, loss and accuracy on missing labels."""
        return {
            "num_rounds": self.num_rounds,
            "missing_labels": {str(p): list(v) for p, v in self.missing_labels().items()},
            "models": [
                {
                    "model": model.name,
                    "partition": model.partition,
                    "rounds_trained": model.rounds_trained,
                    "num_examples": self.num_examples(model),
                    "accuracy": _finite(model.final.accuracy()),
                    "loss": _finite(model.final.loss),
                    "accuracy_on_missing": {
                        str(p): _finite(v) for p, v in self.accuracy_on_missing(model).items()
                    },
                }
                for model in self.models
            ],
        }

    def curves_json(self) -> dict[str, list[dict[str, Any]]]:
        """Each model's accuracy (and loss) after every round, round 0 being the initial model."""
        return {
            model.name: [
                {"round": s.server_round, "accuracy": _finite(s.accuracy), "loss": _finite(s.loss)}
                for s in model.curve
            ]
            for model in self.models
        }

    def table(self, max_subset_columns: int = MAX_SUBSET_COLUMNS) -> Table:
        """The table as text cells: a row per model, a column per set of missing labels.

        Partitions that miss the same labels share a column (``p0,p3 never saw 1,3,7``).
        A ``rounds`` column appears when some node trained in fewer rounds than others.

        With more such columns than ``max_subset_columns``, one column instead
        holds each isolated model's accuracy on its own missing labels (and the federated
        model's mean over every partition's). Cells flagged ``own`` are an isolated model on
        the labels it never saw: what only federation can teach it.
        """
        missing = self.missing_labels()
        groups: dict[tuple[int, ...], list[int]] = {}  # partitions that miss the same labels
        for partition, labels in missing.items():
            groups.setdefault(labels, []).append(partition)
        per_subset = len(groups) <= max_subset_columns
        # Rounds trained are worth a column only when some node sat out rounds (sampling).
        uneven = any(model.rounds_trained != self.num_rounds for model in self.models)
        header = ["model", *(["rounds"] if uneven else []), "examples", "accuracy"]
        if per_subset:
            header += [
                f"p{','.join(map(str, parts))} never saw {_labels(labels)}"
                for labels, parts in groups.items()
            ]
        elif missing:
            header.append("on own missing labels (federated: mean)")
        rows = []
        for model in self.models:
            size = self.num_examples(model)
            cells = [
                Cell(model.name),
                *([Cell(str(model.rounds_trained))] if uneven else []),
                Cell("?" if size is None else f"{size:,}"),
                Cell(percent(model.final.accuracy())),
            ]
            on_missing = self.accuracy_on_missing(model)
            if per_subset:
                cells += [
                    Cell(percent(on_missing[parts[0]]), own=model.partition in parts)
                    for parts in groups.values()
                ]
            elif model.partition is None:
                cells.append(Cell(percent(float(np.mean(list(on_missing.values()))))))
            elif missing:
                own = on_missing.get(model.partition, math.nan)  # NaN: it misses nothing
                cells.append(Cell(percent(own), own=model.partition in on_missing))
            rows.append(cells)
        return Table(header, rows)

    def to_markdown(self) -> str:
        """The table in Markdown; an isolated model's own missing labels in bold."""
        table = self.table()
        lines = [
            _md_row(table.header),
            _md_row(["---"] + ["---:"] * (len(table.header) - 1)),
            *(_md_row([f"**{c.text}**" if c.own else c.text for c in row]) for row in table.rows),
        ]
        if self.label_counts is None:
            lines += [
                "",
                "Accuracy on missing labels needs the ClientApp to answer query.label-counts "
                "(see docs/compare.md).",
            ]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """The table as an HTML ``<table>`` (every cell escaped); own missing labels in bold."""
        table = self.table()
        head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td><b>{html.escape(c.text)}</b></td>"
                if c.own
                else f"<td>{html.escape(c.text)}</td>"
                for c in row
            )
            + "</tr>"
            for row in table.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def _repr_html_(self) -> str:
        """A notebook shows a comparison as its table."""
        return self.to_html()

    def plot(self) -> Any:
        """Each model's test accuracy (and loss) per round, as a ``matplotlib.figure.Figure``."""
        from ._files import curves_figure

        return curves_figure(self)

    def plot_confusion(self, names: Sequence[str] | None = None) -> Any:
        """Confusion matrices side by side (the models named, default all), as a Figure."""
        from ._files import confusion_figure

        return confusion_figure(self, None if names is None else [self._model(n) for n in names])

    def show(self) -> None:
        """In a notebook: show the table, the curves and the confusion matrices in the cell."""
        from ..server._notebook import show_figures, show_html

        show_html(self.to_html(), self.to_markdown())
        show_figures([self.plot(), self.plot_confusion()])

    def _model(self, name: str) -> ModelRun:
        for model in self.models:
            if model.name == name:
                return model
        names = ", ".join(m.name for m in self.models)
        raise ConfigError(f"no model named {name!r} in this comparison: choose from {names}")


@dataclass(frozen=True, slots=True)
class Cell:
    """One cell of the table; ``own``: an isolated model on the labels it never trained on."""

    text: str
    own: bool = False


@dataclass(frozen=True, slots=True)
class Table:
    """The comparison as a header and rows of cells, for any renderer."""

    header: list[str]
    rows: list[list[Cell]]


def percent(value: float) -> str:
    """``0.9616`` as ``96.2%``; NaN (no examples to score) as ``-``."""
    return "-" if math.isnan(value) else f"{100 * value:.1f}%"


def _predicted(models: tuple[ModelRun, ...]) -> set[int]:
    return {int(v) for model in models for v in np.unique(model.final.predicted)}


def _labels(labels: tuple[int, ...]) -> str:
    return ",".join(str(label) for label in labels)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 6)
