"""Files kept beside the repository in ``../shared``, and what a test does when they are absent.

A user's clone has no ``../shared``: the tests that need it skip and say why. CI has it and
sets ``CI``: there a missing file fails the test, so a broken checkout cannot pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def in_ci() -> bool:
    """Whether the ``CI`` environment variable is set (to anything but empty, 0 or false)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_mnist() -> Path:
    """The real MNIST folder; skips the test when it is incomplete, or fails it under CI."""
    missing = [name for name in MNIST_FILES if not (MNIST_DIR / name).is_file()]
    if not missing:
        return MNIST_DIR
    reason = f"real MNIST not found at {MNIST_DIR}"
    if len(missing) < len(MNIST_FILES):
        reason += f" (missing {', '.join(missing)})"
    if in_ci():
        pytest.fail(f"{reason}; CI must have ../shared/data/mnist beside the clone", False)
    pytest.skip(f"{reason}; only CI and dev machines have it")
