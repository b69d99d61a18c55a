"""Partitioners: split one labelled data set into per-client index lists.

Each returns a ``list[np.ndarray]``: one sorted int64 array of indices into the label array
per partition. Every random choice comes from ``numpy.random.default_rng(seed)``.
"""

from ._dirichlet import dirichlet as dirichlet
from ._dirichlet import inner_dirichlet as inner_dirichlet
from ._exclusion import label_exclusion as label_exclusion
from ._iid import iid as iid
from ._natural import natural_id as natural_id
from ._pathological import pathological as pathological
from ._plot import plot_partition_heatmap as plot_partition_heatmap
from ._shard import shard as shard
from ._size_skew import size_skew as size_skew
from ._stats import partition_stats as partition_stats

__all__ = [
    "dirichlet",
    "iid",
    "inner_dirichlet",
    "label_exclusion",
    "natural_id",
    "partition_stats",
    "pathological",
    "plot_partition_heatmap",
    "shard",
    "size_skew",
]
