"""skewed-mnist computes workload W1 exactly: the same steps as the floor loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pollinate.errors import ConfigError

from . import floor_skewed_mnist as floor


def test_missing_data_dir_names_the_key_and_where_to_get_mnist(skewed_mnist, tmp_path) -> None:
    with pytest.raises(ConfigError, match="data-dir") as info:
        skewed_mnist.run({"data-dir": str(tmp_path)})
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert "https://" in str(info.value)


@pytest.mark.slow
def test_one_round_matches_the_floor_loop(skewed_mnist, mnist_dir: Path) -> None:
    result = skewed_mnist.run(
        {"data-dir": str(mnist_dir), "num-server-rounds": 1, "local-epochs": 1}
    )
    expected = floor.fedavg_round(mnist_dir)
    for name, array in result.arrays.items():
        np.testing.assert_allclose(array.numpy(), expected[name].numpy(), rtol=0, atol=1e-6)
    final = result.final_metrics()
    assert final["server.accuracy"] >= 0.8
    assert final["train.num-examples"] == 13729 + 14284 + 14185


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~1 min on a quiet 2-core machine: two full W1 trainings
def test_compare_reproduces_the_known_w1_result(skewed_mnist, mnist_dir: Path) -> None:
    """Isolated: 65-70% and 0% on its missing digits; federated: >= 95.5%, >= 93% on each."""
    comparison = skewed_mnist.compare({"data-dir": str(mnist_dir)})
    assert comparison.missing_labels() == {0: (1, 3, 7), 1: (2, 5, 8), 2: (4, 6, 9)}
    for model in comparison.isolated:
        assert 0.65 <= model.final.accuracy() <= 0.70, model.name
        assert comparison.accuracy_on_missing(model)[model.partition] == 0.0
    federated = comparison.federated
    assert federated.final.accuracy() >= 0.955
    assert min(comparison.accuracy_on_missing(federated).values()) >= 0.93
