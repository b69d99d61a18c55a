"""The model and data: a warm-started LogisticRegression whose weights travel as two arrays."""

import warnings
from functools import cache

import numpy as np
from sklearn.datasets import load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

WINE_CLASSES = np.arange(3)
WINE_FEATURES = 13


def new_model(regularisation: float, iterations: int) -> LogisticRegression:
    """A model that starts from all-zero weights and, when fitted, from its current ones."""
    model = LogisticRegression(C=regularisation, max_iter=iterations, warm_start=True)
    model.classes_ = WINE_CLASSES
    set_weights(model, [np.zeros((3, WINE_FEATURES)), np.zeros(3)])
    return model


def weights(model: LogisticRegression) -> list[np.ndarray]:
    """The model's weights as the arrays it sends: ``[coef_, intercept_]``."""
    return [model.coef_, model.intercept_]


def set_weights(model: LogisticRegression, arrays: list[np.ndarray]) -> None:
    """Load ``[coef_, intercept_]`` into the model."""
    model.coef_, model.intercept_ = arrays


def train_briefly(model: LogisticRegression, x: np.ndarray, y: np.ndarray) -> None:
    """A few solver iterations from the current weights; stopping early is the point."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)


@cache
def _standardised_wine() -> tuple[np.ndarray, np.ndarray]:
    features, labels = load_wine(return_X_y=True)
    return (features - features.mean(axis=0)) / features.std(axis=0), labels


def node_data(partition_id: int, num_partitions: int):
    """This node's wine samples as (x_train, y_train, x_test, y_test).

    Each class is dealt out across the nodes separately, so every node holds every class
    (a LogisticRegression fitted on fewer classes would send arrays of another shape).
    """
    features, labels = _standardised_wine()
    rng = np.random.default_rng(5)
    train_rows, test_rows = [], []
    for label in WINE_CLASSES:
        rows = rng.permutation(np.flatnonzero(labels == label))
        share = np.array_split(rows, num_partitions)[partition_id]
        train_rows.extend(share[1:])
        test_rows.append(share[0])
    return features[train_rows], labels[train_rows], features[test_rows], labels[test_rows]


def everything() -> tuple[np.ndarray, np.ndarray]:
    """All samples of every node, to check the saved model against."""
    return _standardised_wine()
