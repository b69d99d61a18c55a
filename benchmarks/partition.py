"""Time every partitioner on 1,000,000 labels (10 classes), best of 3.

The target: Dirichlet into 10,000 partitions in under 2 s. ``--quick`` is a smoke run:
100,000 labels into 1,000 partitions, once (the target does not apply to it).

usage: python benchmarks/partition.py [--quick]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pollinate.datasets import partition as P

NUM_CLASSES = 10
TARGET_S = 2.0


@dataclass(frozen=True, slots=True)
class Size:
    """How many labels, into how many partitions (``parts``), timed how many times."""

    items: int
    parts: int
    repeats: int


FULL, QUICK = Size(1_000_000, 10_000, 3), Size(100_000, 1_000, 1)


def timed(name: str, make: Callable[[], list[np.ndarray]], repeats: int) -> float:
    """Print the best of ``repeats`` timings of ``make`` and the sizes it cut; return it."""
    elapsed = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        parts = make()
        elapsed = min(elapsed, time.perf_counter() - start)
    sizes = [len(p) for p in parts]
    print(f"{name:<46} {elapsed:7.3f} s   {len(parts):>6} parts, sizes {min(sizes)}..{max(sizes)}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 100,000 labels, once")
    size = QUICK if parser.parse_args().quick else FULL
    n, k = size.items, size.parts
    labels = np.random.default_rng(0).integers(0, NUM_CLASSES, n)
    excluded = [[1, 3, 7], [2, 5, 8], [4, 6, 9]]
    print(f"{n:,} labels, {NUM_CLASSES} classes, best of {size.repeats}")

    def run(name: str, make: Callable[[], list[np.ndarray]]) -> float:
        return timed(name, make, size.repeats)

    target = run(f"dirichlet P={k} alpha=1.0 min=10", lambda: P.dirichlet(labels, k, alpha=1.0))
    run(
        f"dirichlet P={k} alpha=1.0 self_balancing",
        lambda: P.dirichlet(labels, k, alpha=1.0, self_balancing=True),
    )
    run(f"dirichlet P={k // 100} alpha=0.1", lambda: P.dirichlet(labels, k // 100, alpha=0.1))
    run(f"iid P={k}", lambda: P.iid(labels, k))
    run(
        f"inner_dirichlet P={k} (100 each) alpha=0.5",
        lambda: P.inner_dirichlet(labels, [100] * k, alpha=0.5),
    )
    run(f"pathological P={k} k=2", lambda: P.pathological(labels, k, classes_per_partition=2))
    run("label_exclusion P=3 (W1 digits)", lambda: P.label_exclusion(labels, excluded))
    run(f"shard P={k} s=2", lambda: P.shard(labels, k, shards_per_partition=2))
    run(f"size_skew P={k} linear", lambda: P.size_skew(n, k, kind="linear"))
    run(f"size_skew P={k // 10} exponential", lambda: P.size_skew(n, k // 10, kind="exponential"))
    many = np.random.default_rng(1).integers(0, 1000, n)
    run(f"dirichlet P={k} alpha=1.0, 1000 classes", lambda: P.dirichlet(many, k, alpha=1.0))
    run(f"natural_id {k} ids", lambda: P.natural_id(np.random.default_rng(1).integers(0, k, n)))
    parts = P.dirichlet(labels, k, alpha=1.0)
    start = time.perf_counter()
    P.partition_stats(labels, parts)
    print(f"{f'partition_stats P={k}':<46} {time.perf_counter() - start:7.3f} s")
    if size == FULL:
        verdict = "meets" if target < TARGET_S else "MISSES"
        print(f"target: dirichlet P={k} under {TARGET_S:g} s: {verdict} ({target / TARGET_S:.2f}x)")
    else:
        print("target: not measured by --quick (run without it)")


if __name__ == "__main__":
    main()
