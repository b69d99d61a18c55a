"""The comparison's numbers: each model's accuracy overall and on each node's missing labels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..records import ArrayRecord
from ._hooks import Predictions

__all__ = ["Comparison", "ModelRun", "RoundScore"]


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


@dataclass(frozen=True, slots=True)
class ModelRun:
    """One trained model: ``federated``, or ``isolated-P`` trained on partition P alone."""

    name: str
    partition: int | None
    curve: tuple[RoundScore, ...]
    final: Predictions
    arrays: ArrayRecord


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

    def num_examples(self, partition: int) -> int | None:
        """How many training examples a partition holds (None when unknown)."""
        if self.label_counts is None or partition not in self.label_counts:
            return None
        return sum(self.label_counts[partition].values())

    def to_json(self) -> dict[str, Any]:
        """The table as JSON: each model's accuracy, loss and accuracy on missing labels."""
        return {
            "num_rounds": self.num_rounds,
            "missing_labels": {str(p): list(v) for p, v in self.missing_labels().items()},
            "models": [
                {
                    "model": model.name,
                    "partition": model.partition,
                    "num_examples": (
                        None if model.partition is None else self.num_examples(model.partition)
                    ),
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

    def to_markdown(self) -> str:
        """The table in Markdown: a row per model; a column per partition's missing labels.

        A model's own missing labels are in bold: what it never saw, and only federation teaches.
        """
        missing = self.missing_labels()
        header = ["model", "trained on", "accuracy"] + [
            f"missing {_labels(labels)} (partition {p})" for p, labels in missing.items()
        ]
        lines = [_md_row(header), _md_row(["---"] * 2 + ["---:"] * (len(header) - 2))]
        for model in self.models:
            on_missing = self.accuracy_on_missing(model)
            cells = [model.name, self.trained_on(model), percent(model.final.accuracy())]
            for partition in missing:
                cell = percent(on_missing[partition])
                cells.append(f"**{cell}**" if partition == model.partition else cell)
            lines.append(_md_row(cells))
        if self.label_counts is None:
            lines += [
                "",
                "Accuracy on missing labels needs the ClientApp to answer query.label-counts "
                "(see docs/compare.md).",
            ]
        return "\n".join(lines) + "\n"

    def trained_on(self, model: ModelRun) -> str:
        """``"partition 0 (1,010 examples)"`` or ``"all 3 partitions"``."""
        if model.partition is None:
            return f"all {len(self.models) - 1} partitions"
        size = self.num_examples(model.partition)
        return f"partition {model.partition}" + (f" ({size:,} examples)" if size else "")


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
