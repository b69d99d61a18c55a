"""Every invalid argument gives a ConfigError naming the parameter."""

import numpy as np
import pytest

from pollinate.datasets import partition
from pollinate.errors import ConfigError

Y = np.repeat(np.arange(4), 10)

CASES = {
    "iid too many partitions": (lambda: partition.iid(Y, 41), "num_partitions=41"),
    "iid zero partitions": (lambda: partition.iid(Y, 0), "num_partitions"),
    "iid zero items": (lambda: partition.iid(0, 1), "num_items"),
    "iid 2-D labels": (lambda: partition.iid(np.zeros((2, 2)), 1), "labels"),
    "dirichlet alpha zero": (lambda: partition.dirichlet(Y, 2, alpha=0), "alpha"),
    "dirichlet alpha negative": (lambda: partition.dirichlet(Y, 2, alpha=-1.0), "alpha"),
    "dirichlet alpha nan": (lambda: partition.dirichlet(Y, 2, alpha=float("nan")), "alpha"),
    "dirichlet min size impossible": (
        lambda: partition.dirichlet(Y, 4, alpha=1.0, min_partition_size=11),
        "min_partition_size=11",
    ),
    "dirichlet min size negative": (
        lambda: partition.dirichlet(Y, 2, alpha=1.0, min_partition_size=-1),
        "min_partition_size",
    ),
    "dirichlet retries exhausted": (
        lambda: partition.dirichlet(Y, 4, alpha=0.01, min_partition_size=10, max_retries=2),
        "max_retries=2",
    ),
    "dirichlet retries zero": (
        lambda: partition.dirichlet(Y, 2, alpha=1.0, max_retries=0),
        "max_retries",
    ),
    "dirichlet too many partitions": (
        lambda: partition.dirichlet(Y, 41, alpha=1.0, min_partition_size=0),
        "num_partitions",
    ),
    "inner sizes too large": (
        lambda: partition.inner_dirichlet(Y, [30, 11], alpha=1.0),
        "partition_sizes",
    ),
    "inner size zero": (lambda: partition.inner_dirichlet(Y, [0, 5], alpha=1.0), "partition_sizes"),
    "inner no sizes": (lambda: partition.inner_dirichlet(Y, [], alpha=1.0), "partition_sizes"),
    "inner alpha": (lambda: partition.inner_dirichlet(Y, [5], alpha=0.0), "alpha"),
    "pathological k too large": (
        lambda: partition.pathological(Y, 2, classes_per_partition=5),
        "classes_per_partition=5",
    ),
    "pathological k zero": (
        lambda: partition.pathological(Y, 2, classes_per_partition=0),
        "classes_per_partition",
    ),
    "exclusion label absent": (
        lambda: partition.label_exclusion(Y, [[1], [7]]),
        "excluded[1]",
    ),
    "exclusion no partitions": (lambda: partition.label_exclusion(Y, []), "excluded"),
    "exclusion bad order": (
        lambda: partition.label_exclusion(Y, [[1], [2]], order=np.zeros(40, dtype=int)),
        "order",
    ),
    "exclusion short order": (
        lambda: partition.label_exclusion(Y, [[1], [2]], order=np.arange(39)),
        "order",
    ),
    "shard too many shards": (
        lambda: partition.shard(Y, 10, shards_per_partition=5),
        "shards_per_partition",
    ),
    "shard zero per partition": (
        lambda: partition.shard(Y, 2, shards_per_partition=0),
        "shards_per_partition",
    ),
    "size skew kind": (lambda: partition.size_skew(40, 2, kind="cubic"), "kind"),
    "size skew too many partitions": (lambda: partition.size_skew(4, 5), "num_partitions"),
    "natural empty ids": (lambda: partition.natural_id([]), "ids"),
    "stats num_classes too small": (
        lambda: partition.partition_stats(Y, [np.arange(4)], num_classes=3),
        "num_classes",
    ),
    "stats index out of range": (
        lambda: partition.partition_stats(Y, [np.array([40])]),
        "parts",
    ),
    "heatmap class_names length": (
        lambda: partition.plot_partition_heatmap(Y, [np.arange(40)], class_names=["a"]),
        "class_names",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_argument_raises_config_error_naming_it(name):
    call, needle = CASES[name]
    with pytest.raises(ConfigError) as info:
        call()
    assert needle in str(info.value)


def test_dirichlet_retry_error_says_what_to_change():
    with pytest.raises(ConfigError) as info:
        partition.dirichlet(Y, 4, alpha=0.01, min_partition_size=10, max_retries=2)
    for fix in ("raise alpha", "min_partition_size", "max_retries"):
        assert fix in str(info.value)
