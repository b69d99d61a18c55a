"""CIFAR-10 from its binary release, ``cifar-10-binary.tar.gz``: raw bytes, never pickles.

Each batch file is a run of 3,073-byte records: one label byte, then 1,024 red, 1,024 green
and 1,024 blue bytes of a 32x32 image, row by row. Members are read straight out of the
archive; nothing is extracted to disk.
"""

from __future__ import annotations

import os
import tarfile

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from ._dataset import Dataset
from ._download import RemoteFile, fetch

RECORD_BYTES = 1 + 3 * 32 * 32
ARCHIVE = "cifar-10-binary.tar.gz"
# As published in tensorflow/datasets url_checksums/cifar10.txt (170,052,171 bytes);
# not verified against a download here.
CIFAR10_FILES = (
    RemoteFile(
        ARCHIVE,
        ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
        ("c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",),
    ),
)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_TEST = ("test_batch.bin",)


def parse_cifar_records(
    raw: bytes | bytearray, source: str = "<bytes>"
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Images ``(N, 32, 32, 3)`` uint8 (channels last) and int64 labels from batch bytes."""
    if len(raw) % RECORD_BYTES:
        raise ConfigError(
            f"{source} is not a CIFAR-10 binary batch: {len(raw)} bytes is not a multiple "
            f"of the {RECORD_BYTES}-byte record"
        )
    records = np.frombuffer(raw, np.uint8).reshape(-1, RECORD_BYTES)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int64)


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = True
) -> Dataset:
    """CIFAR-10: 50,000 train and 10,000 test 32x32 RGB uint8 images in ten classes."""
    archive = fetch("cifar10", CIFAR10_FILES, data_dir, download) / ARCHIVE
    try:
        with tarfile.open(archive, "r:gz") as tar:
            batches = {
                os.path.basename(m.name): m for m in tar.getmembers() if m.name.endswith(".bin")
            }
            x_train, y_train = _read_split(tar, batches, _TRAIN, str(archive))
            x_test, y_test = _read_split(tar, batches, _TEST, str(archive))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ConfigError(f"{archive} is not a readable tar.gz archive: {exc}") from exc
    return Dataset("cifar10", x_train, y_train, x_test, y_test, CIFAR10_CLASSES)


def _read_split(
    tar: tarfile.TarFile, batches: dict[str, tarfile.TarInfo], names: tuple[str, ...], source: str
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The named batch files of the archive, concatenated in order."""
    parts = []
    for name in names:
        member = batches.get(name)
        stream = tar.extractfile(member) if member is not None else None
        if stream is None:
            raise ConfigError(f"{source} has no {name}: is it cifar-10-binary.tar.gz?")
        parts.append(parse_cifar_records(stream.read(), f"{source}:{name}"))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
