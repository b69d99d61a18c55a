"""Datasets for federated experiments: loaders returning numpy arrays, and partitioners.

Loaders return a :class:`Dataset` of uint8 pixels (never normalised) and int64 labels::

    load("digits")                       bundled with scikit-learn, no download
    load("mnist"), load("fashion-mnist") IDX .gz files, from data_dir or downloaded once
    load("cifar10")                      cifar-10-binary.tar.gz, from data_dir or downloaded
    load("image-folder", "photos/")      one sub-folder per class (needs Pillow)
    load("csv", "table.csv", label_column="label")

Downloads go to ``$POLLINATE_DATA`` (default ``~/.cache/pollinate``) and are SHA-256 checked.
``as_torch(x, y)`` wraps arrays in a torch ``TensorDataset``. See docs/datasets.md.
"""

from . import partition as partition
from ._cifar import load_cifar10 as load_cifar10
from ._csv import load_csv as load_csv
from ._dataset import Dataset as Dataset
from ._dataset import as_torch as as_torch
from ._download import cache_root as cache_root
from ._idx import load_fashion_mnist as load_fashion_mnist
from ._idx import load_mnist as load_mnist
from ._idx import read_idx as read_idx
from ._images import load_image_folder as load_image_folder
from ._loaders import LOADERS as LOADERS
from ._loaders import load as load
from ._loaders import load_digits as load_digits

__all__ = [
    "Dataset",
    "LOADERS",
    "as_torch",
    "cache_root",
    "load",
    "load_cifar10",
    "load_csv",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist",
    "partition",
    "read_idx",
]
