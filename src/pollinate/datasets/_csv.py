"""Tabular data from a CSV file with a header row and one label column."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from ._dataset import Dataset, split_indices


def load_csv(
    path: str | os.PathLike[str],
    *,
    label_column: str | int = -1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Every other column as float32 features, the label column as class indices (int64).

    ``label_column`` is a header name or a position. Classes are the distinct labels, sorted
    (numerically when they are all numbers); rows are split by a seeded permutation.
    """
    file = Path(path).expanduser()
    header, rows = _read_rows(file)
    label = _label_index(header, label_column, file)
    classes = _sorted_labels({row[label] for row in rows})
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[row[label]] for row in rows], dtype=np.int64)
    x = _features(rows, label, header, file)
    train, test = split_indices(len(y), test_fraction, seed)
    return Dataset(file.stem, x[train], y[train], x[test], y[test], tuple(classes))


def _read_rows(file: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the non-empty rows, stripped, each as long as the header."""
    try:
        with file.open(newline="", encoding="utf-8") as f:
            table = [[c.strip() for c in row] for row in csv.reader(f) if row]
    except OSError as exc:
        raise ConfigError(f"cannot read CSV file {file}: {exc}") from exc
    if len(table) < 2:
        raise ConfigError(f"{file} needs a header row and at least one data row")
    header, rows = table[0], table[1:]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ConfigError(
                f"{file} line {number} has {len(row)} fields, header has {len(header)}"
            )
    return header, rows


def _label_index(header: list[str], label_column: str | int, file: Path) -> int:
    """The position of the label column, named or numbered."""
    if isinstance(label_column, int):
        if -len(header) <= label_column < len(header):
            return label_column % len(header)
    elif label_column in header:
        return header.index(label_column)
    raise ConfigError(f"{file} has no label column {label_column!r}; its columns are {header}")


def _sorted_labels(labels: set[str]) -> list[str]:
    """Labels in numeric order when all parse as numbers, else in string order."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def _features(
    rows: list[list[str]], label: int, header: list[str], file: Path
) -> npt.NDArray[np.float32]:
    """The non-label columns as a float32 matrix; an error names the first non-number."""
    keep = [i for i in range(len(header)) if i != label]
    try:
        return np.array([[float(row[i]) for i in keep] for row in rows], dtype=np.float32)
    except ValueError:
        for number, row in enumerate(rows, start=2):
            for i in keep:
                try:
                    float(row[i])
                except ValueError:
                    raise ConfigError(
                        f"{file} line {number}, column {header[i]!r}: {row[i]!r} is not a number"
                    ) from None
        raise
