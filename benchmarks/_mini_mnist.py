"""A miniature MNIST for the benchmarks' ``--quick`` smoke runs: the first images of the real one.

Same four IDX files, same format, so every code path runs; a few thousand images, so a whole
W1 schedule takes seconds. Its figures are a smoke test, not a measurement of W1.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from pollinate.datasets import read_idx

MINI_TRAIN, MINI_TEST = 1200, 300
UBYTE = 0x08


def write_mini_mnist(source: Path, dest: Path) -> Path:
    """Write the first MINI_TRAIN training and MINI_TEST test images of ``source`` to ``dest``."""
    for prefix, count in (("train", MINI_TRAIN), ("t10k", MINI_TEST)):
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{prefix}-{kind}-ubyte.gz"
            data = read_idx(source / name)[:count]
            dims = b"".join(d.to_bytes(4, "big") for d in data.shape)
            header = bytes([0, 0, UBYTE, data.ndim]) + dims
            (dest / name).write_bytes(gzip.compress(header + data.tobytes(), compresslevel=1))
    return dest
