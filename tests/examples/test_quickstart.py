"""The quickstart: it learns, it shows what federation adds, and it is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

MISSING_KEYS = ("accuracy-missing-1-3-7", "accuracy-missing-2-5-8", "accuracy-missing-4-6-9")


@pytest.fixture(scope="module")
def two_runs(quickstart):
    """The default quickstart, run twice with the same seed."""
    return quickstart.run(), quickstart.run()


def test_federated_model_recognises_every_client_missing_digits(two_runs) -> None:
    final = two_runs[0].final_metrics()
    assert final["server.accuracy"] >= 0.9
    for key in MISSING_KEYS:
        assert final[f"server.{key}"] > 0.5, key


def test_federated_evaluation_runs_on_the_clients(two_runs) -> None:
    evaluate = two_runs[0].metrics("evaluate")
    assert sorted(evaluate) == [1, 2, 3, 4, 5]
    assert evaluate[5]["accuracy"] > 0.8


def test_same_seed_gives_the_same_model_bit_for_bit(two_runs) -> None:
    first, second = two_runs
    assert first.arrays == second.arrays
    assert first.metrics("server") == second.metrics("server")


def test_another_seed_gives_another_model(quickstart) -> None:
    first = quickstart.run({"num-server-rounds": 1, "seed": 0})
    second = quickstart.run({"num-server-rounds": 1, "seed": 1})
    assert first.arrays != second.arrays


def test_each_partition_lacks_its_digits_and_shards_are_disjoint(quickstart) -> None:
    task = quickstart.module("task")
    seen: set[tuple[float, ...]] = set()
    for p in range(5):
        data = task.load_partition(p, 5)
        labels = set(data.train.y.tolist()) | set(data.validation.y.tolist())
        assert labels == set(range(10)) - set(task.EXCLUDED[p % 3])
        rows = {tuple(row) for row in np.asarray(data.train.x).tolist()}
        assert not rows & seen
        seen |= rows


def test_a_client_alone_never_learns_its_missing_digits(quickstart) -> None:
    alone = quickstart.run(num_nodes=1)  # one partition: every digit but 1, 3 and 7
    final = alone.final_metrics()
    assert final["server.accuracy-missing-1-3-7"] == 0.0
    assert final["server.accuracy-missing-2-5-8"] > 0.8


def test_compare_shows_what_federation_adds(quickstart) -> None:
    """Each isolated model misses its partition's digits entirely; the federated one learns them."""
    comparison = quickstart.compare()
    assert comparison.missing_labels() == {0: (1, 3, 7), 1: (2, 5, 8), 2: (4, 6, 9)}
    for model in comparison.isolated:
        assert 0.6 <= model.final.accuracy() <= 0.75
        assert comparison.accuracy_on_missing(model)[model.partition] == 0.0
    federated = comparison.federated
    assert federated.final.accuracy() >= 0.93
    assert min(comparison.accuracy_on_missing(federated).values()) >= 0.9
