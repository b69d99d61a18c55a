"""MNIST and Fashion-MNIST from their IDX ``.gz`` files: local, or downloaded once.

An IDX file is a 4-byte magic (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values. Parsing is one ``np.frombuffer`` over the
decompressed bytes, so all 70,000 MNIST images load in a few tenths of a second.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from ._dataset import Dataset
from ._download import RemoteFile, fetch

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

# name: (SHA-256 of the file the mirrors serve, SHA-256 of pollinate's reference copy).
# The mirrors' digests are those published in tensorflow/datasets url_checksums/mnist.txt
# (sizes 9,912,422 / 28,881 / 1,648,877 / 4,542 bytes); the reference copy is the same data
# gzip-compressed differently (its uncompressed train images hash to ba891046e6505d7a...).
_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
    ),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
    ),
}
# As published in tensorflow/datasets url_checksums/fashion_mnist.txt; not verified here.
_FASHION_SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    ),
    "train-labels-idx1-ubyte.gz": (
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    ),
    "t10k-images-idx3-ubyte.gz": (
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ),
}

MNIST_FILES = tuple(
    RemoteFile(name, tuple(url + name for url in _MNIST_URLS), sha)
    for name, sha in _MNIST_SHA256.items()
)
FASHION_MNIST_FILES = tuple(
    RemoteFile(name, tuple(url + name for url in _FASHION_URLS), sha)
    for name, sha in _FASHION_SHA256.items()
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def parse_idx(raw: bytes | bytearray, source: str = "<bytes>") -> npt.NDArray[Any]:
    """The array an IDX buffer holds, shaped as its header says; a clear error if malformed."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ConfigError(f"{source} is not an IDX file: bad magic {bytes(raw[:4]).hex()}")
    ndim, start = raw[3], 4 + 4 * raw[3]
    if len(raw) < start:
        raise ConfigError(f"{source} is truncated: its header needs {start} bytes")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ConfigError(
            f"{source} is truncated or padded: header says {expected} bytes, file has {len(raw)}"
        )
    return np.frombuffer(raw, dtype, offset=start).reshape(shape)


def read_idx(path: str | os.PathLike[str]) -> npt.NDArray[Any]:
    """An IDX file, gzip-compressed or not, as a writable array of its stated shape."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ConfigError(f"{path} is a damaged gzip file: {exc}") from exc
    return parse_idx(bytearray(data), str(path))


def load_mnist(data_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> Dataset:
    """MNIST: 60,000 train and 10,000 test 28x28 uint8 digits, from IDX files or a download."""
    return _load_idx_dataset("mnist", MNIST_FILES, tuple(map(str, range(10))), data_dir, download)


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None, *, download: bool = True
) -> Dataset:
    """Fashion-MNIST: MNIST's layout and sizes, ten kinds of clothing instead of digits."""
    return _load_idx_dataset(
        "fashion-mnist", FASHION_MNIST_FILES, FASHION_MNIST_CLASSES, data_dir, download
    )


def _load_idx_dataset(
    name: str,
    files: tuple[RemoteFile, ...],
    classes: tuple[str, ...],
    data_dir: str | os.PathLike[str] | None,
    download: bool,
) -> Dataset:
    """The four IDX files of an MNIST-shaped dataset as a Dataset, labels widened to int64."""
    folder = fetch(name, files, data_dir, download)
    x_train, y_train, x_test, y_test = (
        read_idx(folder / f)
        for f in (
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        )
    )
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ConfigError(
                f"{name} {split} files in {folder} disagree: images {x.shape}, labels {y.shape}"
            )
    return Dataset(
        name, x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64), classes
    )
