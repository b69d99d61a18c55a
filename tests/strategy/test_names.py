"""A preset and the piece it is made of take the same parameter names (Flower's)."""

import inspect

import pytest

from pollinate.strategy import (
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvgM,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
    QFedAvg,
    bulyan,
    krum,
    multi_krum,
    qfedavg,
    server_adagrad,
    server_adam,
    server_momentum,
    server_yogi,
    trimmed_mean,
)

PAIRS = [
    (FedAvgM, server_momentum),
    (FedAdagrad, server_adagrad),
    (FedAdam, server_adam),
    (FedYogi, server_yogi),
    (QFedAvg, qfedavg),
    (FedTrimmedAvg, trimmed_mean),
    (Krum, krum),
    (MultiKrum, multi_krum),
    (Bulyan, bulyan),
]


@pytest.mark.parametrize(("preset", "piece"), PAIRS, ids=lambda x: x.__name__)
def test_every_parameter_of_a_preset_is_a_parameter_of_its_piece(preset, piece):
    own = set(inspect.signature(preset.__init__).parameters) - {"self", "options"}
    assert own, f"{preset.__name__} has no parameters of its own"
    assert own <= set(inspect.signature(piece).parameters)


@pytest.mark.parametrize(
    ("preset", "piece"),
    [
        (FedAvgM(server_learning_rate=0.5, server_momentum=0.3), server_momentum(0.5, 0.3)),
        (FedAdagrad(eta=0.2, tau=0.1), server_adagrad(eta=0.2, tau=0.1)),
        (FedAdam(eta=0.2, beta_1=0.5, beta_2=0.6, tau=0.1), server_adam(0.2, 0.5, 0.6, 0.1)),
        (FedYogi(eta=0.2, beta_1=0.5, beta_2=0.6, tau=0.1), server_yogi(0.2, 0.5, 0.6, 0.1)),
        (Krum(num_malicious_nodes=1), krum(num_malicious_nodes=1)),
        (
            MultiKrum(num_malicious_nodes=1, num_nodes_to_keep=3),
            multi_krum(num_malicious_nodes=1, num_nodes_to_keep=3),
        ),
        (Bulyan(num_malicious_nodes=1), bulyan(num_malicious_nodes=1)),
        (QFedAvg(q=0.5, qffl_learning_rate=0.2), qfedavg(q=0.5, qffl_learning_rate=0.2)),
    ],
    ids=lambda x: type(x).__name__,
)
def test_a_preset_is_its_piece_with_the_same_values(preset, piece):
    assert repr(piece) in repr(preset.aggregation)
