"""cross-device-mnist computes workload W2 exactly: the same steps as the floor loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pollinate.errors import ConfigError

from . import floor_cross_device as floor


def test_missing_data_dir_names_the_key_and_where_to_get_mnist(
    cross_device_mnist, tmp_path
) -> None:
    with pytest.raises(ConfigError, match="data-dir") as info:
        cross_device_mnist.run({"data-dir": str(tmp_path), "nodes-per-round": 5}, num_nodes=10)
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert "https://" in str(info.value)


def test_more_nodes_per_round_than_nodes_is_one_clear_error(
    cross_device_mnist, mnist_dir: Path
) -> None:
    # Real data: the ClientApp's warm-up reads it before the ServerApp checks its config.
    with pytest.raises(ConfigError, match="'nodes-per-round' is 100 but the federation has 10"):
        cross_device_mnist.run({"data-dir": str(mnist_dir)}, num_nodes=10)


def test_sampler_draws_each_round_from_one_generator_and_replays_on_resume(
    cross_device_mnist,
) -> None:
    task = cross_device_mnist.module("task")
    rng = np.random.default_rng(7)
    expected = [rng.choice(50, 5, replace=False).tolist() for _ in range(3)]
    sampler = task.RoundSampler(7)
    assert [sampler.sample(r, 50, 5) for r in (1, 2, 3)] == expected
    assert task.RoundSampler(7).sample(3, 50, 5) == expected[2]  # a run resumed at round 3
    assert sampler.sample(2, 50, 5) == expected[1]


def test_partition_is_the_floors(cross_device_mnist) -> None:
    task = cross_device_mnist.module("task")
    labels = np.random.default_rng(1).integers(0, 10, 5000)
    ours = task.dirichlet_partition(labels, 40, 0.5, 0)
    theirs = floor.dirichlet_partition(labels, 40, 0.5, 0)
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_two_rounds_match_the_floor_loop(cross_device_mnist, mnist_dir: Path) -> None:
    overrides = {"data-dir": str(mnist_dir), "num-server-rounds": 2, "nodes-per-round": 10}
    result = cross_device_mnist.run(overrides, num_nodes=50)
    expected = floor.fedavg(mnist_dir, clients=50, per_round=10, rounds=2)
    for name, array in result.arrays.items():
        np.testing.assert_allclose(array.numpy(), expected[name].numpy(), rtol=0, atol=1e-6)
    assert result.final_metrics()["server.accuracy"] > 0.5


@pytest.mark.slow
def test_w2_reaches_the_floors_accuracy(cross_device_mnist, mnist_dir: Path) -> None:
    """W2 itself: 1,000 nodes, 100 a round, 10 rounds; the floor gives 83.36% (~5 s here)."""
    result = cross_device_mnist.run({"data-dir": str(mnist_dir)}, num_nodes=1000)
    assert round(result.final_metrics()["server.accuracy"], 4) == 0.8336
