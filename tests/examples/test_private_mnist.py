"""private-mnist: W1's skew with client clipping + SecAgg+ + server noise learns, and accounts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pollinate.privacy import epsilon

MISSING_KEYS = ("accuracy-missing-1-3-7", "accuracy-missing-2-5-8", "accuracy-missing-4-6-9")


def test_each_device_lacks_its_silos_digits_and_shards_are_disjoint(private_mnist) -> None:
    task = private_mnist.module("task")
    seen: set[tuple[float, ...]] = set()
    for p in range(6):
        data = task.load_partition("", p, 6)
        assert set(data.y.tolist()) == set(range(10)) - set(task.EXCLUDED[p % 3])
        rows = {tuple(row) for row in data.x.tolist()}
        assert not rows & seen
        seen |= rows


def test_a_short_secure_dp_run_learns_and_reports_epsilon_each_round(private_mnist) -> None:
    rounds, q, z = 8, 0.5, 0.3
    # num-shares 5, not 7: half of 30 nodes draws fewer than 7 in some of 8 rounds with odds
    # 0.006, which SecAgg+ refuses up front (a short Poisson round would end the run)
    config = {"num-server-rounds": rounds, "fraction-train": q, "noise-multiplier": z}
    config |= {"num-shares": 5, "reconstruction-threshold": 3}
    result = private_mnist.run(config, num_nodes=30)
    trained = [r.train for r in result.rounds if r.train]
    assert len(trained) == rounds
    for t, train in enumerate(trained, 1):
        assert train.metrics["secagg.count"] == train.num_ok  # summed by SecAgg+
        assert train.metrics["privacy.epsilon"] == epsilon([(q, z)] * t, 1e-4)
        assert train.metrics["privacy.clip-norm"] == 0.3
    final = result.final_metrics()
    assert final["server.accuracy"] >= 0.5  # chance is 0.1
    assert all(f"server.{key}" in final for key in MISSING_KEYS)


@pytest.mark.slow
@pytest.mark.timeout(900)  # about 3 min on 2 busy cores: 40 rounds of ~30 devices
def test_real_mnist_with_the_defaults_learns_every_missing_digit(
    private_mnist, mnist_dir: Path
) -> None:
    result = private_mnist.run({"data-dir": str(mnist_dir)}, num_nodes=300)
    final = result.final_metrics()
    assert final["server.accuracy"] >= 0.75  # 81.7% measured (README)
    assert min(final[f"server.{key}"] for key in MISSING_KEYS) >= 0.6  # 70.0% the lowest
    assert final["train.privacy.epsilon"] < 4
