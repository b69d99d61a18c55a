"""examples/dpsgd-mnist: DP-SGD nodes learn, and each spends at most its budget."""

from __future__ import annotations

import pytest

from pollinate.errors import ConfigError

from .conftest import REPO, Example

pytest.importorskip("opacus")

# The app filters torch's warning about Opacus's hooks when task.py is imported; pytest
# restores its own filters (warnings are errors) for every test.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


@pytest.fixture(scope="module")
def dpsgd_mnist() -> Example:
    return Example(REPO / "examples" / "dpsgd-mnist", "dpsgd_mnist")


def test_nodes_learn_the_digits_within_their_budget(dpsgd_mnist) -> None:
    result = dpsgd_mnist.run()
    assert result.final_metrics()["server.accuracy"] >= 0.8
    train = result.metrics("train")
    epsilons = [train[r]["privacy.node-epsilon"] for r in sorted(train)]
    assert epsilons == sorted(epsilons) and len(epsilons) == 5
    assert 7.5 <= epsilons[-1] <= 8.0  # calibrated for the 5 rounds x 2 local epochs
    assert train[5]["privacy.node-delta"] == pytest.approx(1e-5)


def test_a_fixed_noise_instead_of_a_budget(dpsgd_mnist) -> None:
    small = dpsgd_mnist.run({"num-server-rounds": 1, "target-epsilon": 0, "noise-multiplier": 4})
    large = dpsgd_mnist.run({"num-server-rounds": 1, "target-epsilon": 0, "noise-multiplier": 1})
    epsilon = "train.privacy.node-epsilon"
    assert 0 < small.final_metrics()[epsilon] < large.final_metrics()[epsilon]


def test_a_data_dir_without_mnist_is_one_clear_error(dpsgd_mnist, tmp_path) -> None:
    with pytest.raises(ConfigError, match="lacks the MNIST file"):
        dpsgd_mnist.run({"data-dir": str(tmp_path)})


@pytest.mark.slow
def test_one_round_on_real_mnist(dpsgd_mnist, mnist_dir) -> None:
    result = dpsgd_mnist.run(
        {"data-dir": str(mnist_dir), "num-server-rounds": 1, "local-epochs": 1}
    )
    final = result.final_metrics()
    assert final["server.accuracy"] >= 0.8
    assert 0 < final["train.privacy.node-epsilon"] <= 8.0
