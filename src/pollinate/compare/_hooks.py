"""What an app provides so ``pollinate compare`` can score its models.

Two small hooks, both plain functions:

- ``predict(arrays, run_config) -> Predictions``, named in ``pyproject.toml`` as
  ``[tool.pollinate.app.components] predict = "mypackage.task:predict"``: the true and
  predicted labels of the app's held-out test set for one model's weights. Everything in the
  comparison (accuracy, missing-label subsets, confusion matrices, curves) is computed from it.
- A ClientApp handler for ``query.label-counts`` (``@app.query("label-counts")``) that replies
  with ``label_counts(train_labels)``: which labels a node trains on, so the comparison knows
  each node's missing labels. Only counts leave the node, never examples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..context import UserConfigValue
from ..errors import AppError, RecordError
from ..message import ErrorCode, Message
from ..records import ArrayRecord, MetricRecord

__all__ = ["LABEL_COUNTS", "PredictFn", "Predictions", "label_counts", "read_label_counts"]

LABEL_COUNTS = "query.label-counts"
"""The message type asking a node how many training examples of each label it holds."""


class Predictions:
    """One model's answers on the test set: true ``labels``, ``predicted`` labels, mean ``loss``.

    Labels are integers (class indices), given as any array-like (numpy, torch's
    ``.numpy()``, JAX, lists) and kept as int64 vectors. ``loss`` is optional and, when
    given, is drawn in the comparison's curves next to accuracy.
    """

    __slots__ = ("labels", "loss", "predicted")

    def __init__(self, labels: ArrayLike, predicted: ArrayLike, loss: float | None = None):
        self.labels = _int_vector(labels, "Predictions labels")
        self.predicted = _int_vector(predicted, "Predictions predicted")
        if self.labels.shape != self.predicted.shape:
            raise RecordError(
                f"Predictions has {len(self.labels)} labels but {len(self.predicted)} "
                "predictions: give one predicted label per test example"
            )
        if len(self.labels) == 0:
            raise RecordError("Predictions is empty: predict on a non-empty test set")
        self.loss = None if loss is None else float(loss)

    def __repr__(self) -> str:
        return f"Predictions({len(self.labels)} examples, accuracy={self.accuracy():.4f})"

    def accuracy(self, among: frozenset[int] | None = None) -> float:
        """The fraction predicted right, over all examples or those whose label is in ``among``."""
        if among is None:
            return float(np.mean(self.labels == self.predicted))
        mask = np.isin(self.labels, list(among))
        if not mask.any():
            return float("nan")
        return float(np.mean(self.labels[mask] == self.predicted[mask]))


PredictFn = Callable[[ArrayRecord, Mapping[str, UserConfigValue]], Predictions]
"""``predict(arrays, run_config) -> Predictions``: score one model's weights on the test set."""


def call_predict(
    predict: PredictFn, arrays: ArrayRecord, run_config: Mapping[str, UserConfigValue]
) -> Predictions:
    """``predict(arrays, run_config)``, checked: anything but Predictions is the app's mistake."""
    predictions = predict(arrays, run_config)
    if not isinstance(predictions, Predictions):
        raise AppError(
            f"the predict function returned {type(predictions).__name__}; return "
            "pollinate.compare.Predictions(labels, predicted, loss=None)"
        )
    return predictions


def label_counts(labels: ArrayLike) -> MetricRecord:
    """How many examples of each label ``labels`` holds, as a reply to ``query.label-counts``."""
    values, counts = np.unique(_int_vector(labels, "label_counts labels"), return_counts=True)
    return MetricRecord({str(int(v)): int(c) for v, c in zip(values, counts, strict=True)})


def read_label_counts(reply: Message) -> dict[int, int] | None:
    """The label counts in a node's reply, or None when its ClientApp has no handler for them."""
    if reply.error is not None:
        if reply.error.code == ErrorCode.NO_HANDLER:
            return None
        raise AppError(f"the query.label-counts handler failed: {reply.error.reason}")
    try:
        record = reply.content.metrics()
        counts = {int(label): count for label, count in record.items()}
    except (RecordError, ValueError):
        counts = None
    if counts is not None:  # {} is a node with no training examples
        valid = {k: v for k, v in counts.items() if isinstance(v, int) and v >= 0}
        if len(valid) == len(counts):
            return valid
    raise AppError(
        "the query.label-counts handler must reply with "
        "RecordDict({'metrics': pollinate.compare.label_counts(train_labels)})"
    )


def _int_vector(values: ArrayLike, name: str) -> NDArray[np.int64]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise RecordError(
            f"{name} must hold one label per example (1-D), got shape {array.shape}: "
            "take the argmax over the class axis first"
        )
    whole = np.issubdtype(array.dtype, np.integer) or (
        np.issubdtype(array.dtype, np.floating) and bool(np.all(array == np.round(array)))
    )
    if array.size and not whole:
        raise RecordError(f"{name} must be integer class labels, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)
