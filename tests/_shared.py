"""Files kept beside the repository in ``../shared``, and what a test does when they are absent.

A user's clone has no ``../shared``: the tests that need it skip and say why. CI has it and
sets ``CI``: there a missing file fails the test, so a broken checkout cannot pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
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
    """The real MNIST folder, ``../shared/data/mnist``."""
    folder = SHARED / "data" / "mnist"
    return _require(folder, [folder / name for name in MNIST_FILES], "real MNIST")


def require_w1_floor() -> Path:
    """The W1 floor script the skewed-mnist benchmark runs, ``../shared/bench``."""
    script = SHARED / "bench" / "floor_skewed_mnist.py"
    return _require(script, [script], "the W1 floor script")


def require_w2_floor() -> Path:
    """The W2 floor script the cross-device benchmark runs, ``../shared/bench``."""
    script = SHARED / "bench" / "floor_cross_device.py"
    return _require(script, [script], "the W2 floor script")


def _require(found: Path, files: Sequence[Path], what: str) -> Path:
    """``found`` if every one of ``files`` exists; else skip the test, or fail it under CI."""
    missing = [f.name for f in files if not f.is_file()]
    if not missing:
        return found
    reason = f"{what} not found at {found}"
    if len(missing) < len(files):
        reason += f" (missing {', '.join(missing)})"
    if in_ci():
        pytest.fail(f"{reason}; CI must have ../shared beside the clone", pytrace=False)
    pytest.skip(f"{reason}; only CI and dev machines have ../shared beside the clone")
