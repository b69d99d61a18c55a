"""Shards: sort by label, cut into equal shards, deal shards out (McMahan et al. 2017)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ...errors import ConfigError
from ._common import Parts, as_labels, check_int, check_partitions, encode, from_sequences


def shard(
    labels: ArrayLike, num_partitions: int, *, shards_per_partition: int, seed: int = 0
) -> Parts:
    """Deal label-sorted shards: the pathological non-IID MNIST split of McMahan et al. 2017.

    Items sorted by label (random order within one) are cut into ``P * s`` near-equal shards;
    each partition gets ``s`` shards at random.
    """
    array = as_labels(labels)
    num_partitions = check_partitions(num_partitions, len(array))
    per = check_int("shards_per_partition", shards_per_partition, minimum=1, fix="use 1 or more")
    num_shards = num_partitions * per
    if num_shards > len(array):
        raise ConfigError(
            f"num_partitions x shards_per_partition = {num_shards} shards is more than the "
            f"{len(array)} items; lower shards_per_partition or num_partitions"
        )
    codes, _ = encode(array)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(array))
    by_label = shuffled[np.argsort(codes[shuffled], kind="stable")]
    shard_bounds = np.arange(num_shards + 1) * len(array) // num_shards
    dealt = rng.permutation(num_shards)
    pieces = [by_label[shard_bounds[s] : shard_bounds[s + 1]] for s in dealt]
    order = np.concatenate(pieces)
    sizes = np.diff(shard_bounds)[dealt].reshape(num_partitions, per).sum(axis=1)
    return from_sequences(order, np.concatenate([[0], np.cumsum(sizes)]))
