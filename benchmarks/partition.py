"""Time every partitioner on 1,000,000 labels (10 classes), best of 3.

The target: Dirichlet into 10,000 partitions in under 2 s. Run: python benchmarks/partition.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from pollinate.datasets import partition as P

NUM_ITEMS = 1_000_000
NUM_CLASSES = 10
REPEATS = 3


def timed(name: str, make: Callable[[], list[np.ndarray]]) -> None:
    elapsed = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        parts = make()
        elapsed = min(elapsed, time.perf_counter() - start)
    sizes = [len(p) for p in parts]
    print(f"{name:<46} {elapsed:7.3f} s   {len(parts):>6} parts, sizes {min(sizes)}..{max(sizes)}")


def main() -> None:
    labels = np.random.default_rng(0).integers(0, NUM_CLASSES, NUM_ITEMS)
    excluded = [[1, 3, 7], [2, 5, 8], [4, 6, 9]]
    print(f"{NUM_ITEMS:,} labels, {NUM_CLASSES} classes, best of {REPEATS}")
    timed("dirichlet P=10000 alpha=1.0 min=10", lambda: P.dirichlet(labels, 10_000, alpha=1.0))
    timed(
        "dirichlet P=10000 alpha=1.0 self_balancing",
        lambda: P.dirichlet(labels, 10_000, alpha=1.0, self_balancing=True),
    )
    timed("dirichlet P=100 alpha=0.1", lambda: P.dirichlet(labels, 100, alpha=0.1))
    timed("iid P=10000", lambda: P.iid(labels, 10_000))
    timed(
        "inner_dirichlet P=10000 (100 each) alpha=0.5",
        lambda: P.inner_dirichlet(labels, [100] * 10_000, alpha=0.5),
    )
    timed(
        "pathological P=10000 k=2",
        lambda: P.pathological(labels, 10_000, classes_per_partition=2),
    )
    timed("label_exclusion P=3 (W1 digits)", lambda: P.label_exclusion(labels, excluded))
    timed("shard P=10000 s=2", lambda: P.shard(labels, 10_000, shards_per_partition=2))
    timed("size_skew P=10000 linear", lambda: P.size_skew(NUM_ITEMS, 10_000, kind="linear"))
    timed("size_skew P=1000 exponential", lambda: P.size_skew(NUM_ITEMS, 1000, kind="exponential"))
    many = np.random.default_rng(1).integers(0, 1000, NUM_ITEMS)
    timed("dirichlet P=10000 alpha=1.0, 1000 classes", lambda: P.dirichlet(many, 10_000, alpha=1.0))
    timed(
        "natural_id 10000 ids",
        lambda: P.natural_id(np.random.default_rng(1).integers(0, 10_000, NUM_ITEMS)),
    )
    parts = P.dirichlet(labels, 10_000, alpha=1.0)
    start = time.perf_counter()
    P.partition_stats(labels, parts)
    print(f"{'partition_stats P=10000':<46} {time.perf_counter() - start:7.3f} s")


if __name__ == "__main__":
    main()
