"""Server optimizers match their closed forms; FedAvgM/FedAdagrad/FedAdam/FedYogi use them."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pollinate import ArrayRecord, FedAvg, MetricRecord, RecordDict
from pollinate.errors import ConfigError, RoundError
from pollinate.strategy._compose import Update, chain, weighted_average
from pollinate.strategy._fedopt import (
    FedAdagrad,
    FedAdam,
    FedAvgM,
    FedYogi,
    server_adagrad,
    server_adam,
    server_momentum,
    server_yogi,
)

CURRENT = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]])
AGGREGATES = [
    np.array([[1.5, -1.5, 2.0], [0.1, 1.0, 0.75]]),
    np.array([[0.0, -3.0, 2.5], [0.2, 2.0, -0.25]]),
]


def record(value):
    return ArrayRecord({"w": np.asarray(value, np.float64)})


def run(optimizer, current=CURRENT, aggregates=AGGREGATES):
    """The models after each step, each step starting from the last one's model."""
    models = []
    for aggregate in aggregates:
        current = optimizer.step(record(current), record(aggregate))["w"].numpy()
        models.append(current)
    return models


def momentum_closed_form(lr, momentum, nesterov):
    x, v, out = CURRENT, np.zeros_like(CURRENT), []
    for aggregate in AGGREGATES:
        delta = aggregate - x
        v = momentum * v + delta
        x = x + lr * (momentum * v + delta if nesterov else v)
        out.append(x)
    return out


def adaptive_closed_form(second_moment, lr, beta_1, beta_2, tau):
    x, m, v, out = CURRENT, np.zeros_like(CURRENT), np.full_like(CURRENT, tau**2), []
    for aggregate in AGGREGATES:
        delta = aggregate - x
        m = beta_1 * m + (1 - beta_1) * delta
        v = second_moment(v, delta**2, beta_2)
        x = x + lr * m / (np.sqrt(v) + tau)
        out.append(x)
    return out


def adagrad_v(v, squared, beta_2):
    return v + squared


def adam_v(v, squared, beta_2):
    return beta_2 * v + (1 - beta_2) * squared


def yogi_v(v, squared, beta_2):
    return v - (1 - beta_2) * squared * np.sign(v - squared)


@pytest.mark.parametrize("nesterov", [False, True])
def test_server_momentum_matches_its_closed_form_over_two_steps(nesterov):
    got = run(server_momentum(lr=0.7, momentum=0.6, nesterov=nesterov))
    for step, expected in zip(got, momentum_closed_form(0.7, 0.6, nesterov), strict=True):
        np.testing.assert_allclose(step, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("optimizer", "second_moment", "params"),
    [
        (server_adagrad, adagrad_v, {"lr": 0.1, "tau": 1e-9}),
        (server_adagrad, adagrad_v, {"lr": 0.3, "beta_1": 0.5, "tau": 0.01}),
        (server_adam, adam_v, {"lr": 0.01, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-9}),
        (server_adam, adam_v, {"lr": 0.5, "beta_1": 0.3, "beta_2": 0.7, "tau": 0.1}),
        (server_yogi, yogi_v, {"lr": 0.01, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3}),
        (server_yogi, yogi_v, {"lr": 0.5, "beta_1": 0.3, "beta_2": 0.7, "tau": 2.0}),
    ],
)
def test_adaptive_optimizers_match_their_closed_form_over_two_steps(
    optimizer, second_moment, params
):
    expected = adaptive_closed_form(
        second_moment,
        params["lr"],
        params.get("beta_1", 0.0),
        params.get("beta_2", 0.0),
        params["tau"],
    )
    for step, want in zip(run(optimizer(**params)), expected, strict=True):
        np.testing.assert_allclose(step, want, rtol=1e-12, atol=1e-15)


def test_yogi_second_moment_moves_both_ways():
    # tau=2: v starts at 4, above the small deltas' squares (sign +) and below 3**2 (sign -).
    optimizer = server_yogi(lr=1.0, beta_1=0.0, beta_2=0.5, tau=2.0)
    out = optimizer.step(record([0.0, 0.0]), record([1.0, 3.0]))["w"].numpy()
    v = np.array([4 - 0.5 * 1, 4 + 0.5 * 9])
    np.testing.assert_allclose(out, np.array([1.0, 3.0]) / (np.sqrt(v) + 2.0), rtol=1e-12)


def test_adagrad_first_step_from_zero_state_is_lr_times_the_sign():
    out = run(server_adagrad(lr=0.1, tau=1e-12), aggregates=AGGREGATES[:1])[0]
    delta = AGGREGATES[0] - CURRENT
    np.testing.assert_allclose(out, CURRENT + 0.1 * np.sign(delta), atol=1e-9)


def updates(values, weights):
    return [
        Update(i, ArrayRecord({"w": np.asarray(v)}), float(w), MetricRecord({"num-examples": w}))
        for i, (v, w) in enumerate(zip(values, weights, strict=True))
    ]


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(np.float64, (3, 4), elements=st.floats(-6e4, 6e4)),
    st.lists(st.floats(0.1, 100.0), min_size=3, max_size=3),
    st.sampled_from([np.float64, np.float32, np.float16]),
    st.booleans(),
)
def test_momentum_zero_and_lr_one_is_plain_fedavg_exactly(values, weights, dtype, nesterov):
    current = ArrayRecord({"w": np.linspace(-5, 5, 4).astype(dtype)})
    round_updates = updates([row.astype(dtype) for row in values], weights)
    fedavg = chain()(round_updates, current)
    momentum = chain(server_momentum(lr=1.0, momentum=0.0, nesterov=nesterov))
    for _ in range(2):  # the state (zero momentum) must not matter on later rounds either
        got = momentum(round_updates, current)
        assert got["w"].dtype == dtype
        np.testing.assert_array_equal(got["w"].numpy(), fedavg["w"].numpy())


def test_an_optimizer_composes_after_an_explicit_aggregator():
    round_updates = updates([[1.0, 2.0], [3.0, 6.0]], [1.0, 3.0])
    current = ArrayRecord({"w": np.zeros(2)})
    explicit = chain(weighted_average(), server_adam(lr=0.1))(round_updates, current)
    default = chain(server_adam(lr=0.1))(round_updates, current)
    expected = server_adam(lr=0.1).step(current, ArrayRecord({"w": np.array([2.5, 5.0])}))
    assert explicit == default == expected


def test_state_is_kept_across_rounds_and_forgotten_on_reset():
    optimizer = server_momentum(lr=1.0, momentum=0.5)
    first = optimizer.step(record([0.0]), record([1.0]))["w"].numpy()
    second = optimizer.step(record([0.0]), record([1.0]))["w"].numpy()
    assert first[0] == 1.0 and second[0] == 1.5  # v = 0.5 * 1 + 1
    optimizer.reset()
    assert optimizer.step(record([0.0]), record([1.0]))["w"].numpy()[0] == 1.0


def test_chain_reset_resets_its_optimizers():
    aggregation = chain(server_adam(lr=0.1))
    round_updates = updates([[1.0]], [1.0])
    current = ArrayRecord({"w": np.zeros(1)})
    first = aggregation(round_updates, current)
    assert aggregation(round_updates, current) != first
    aggregation.reset()
    assert aggregation(round_updates, current) == first


def test_float32_stays_float32_and_integer_arrays_take_the_aggregate():
    current = ArrayRecord(
        {
            "w": np.zeros(3, np.float32),
            "steps": np.array([4], np.int64),
            "mask": np.array([True, False]),
        }
    )
    aggregate = ArrayRecord(
        {
            "w": np.ones(3, np.float32),
            "steps": np.array([7], np.int64),
            "mask": np.array([False, True]),
        }
    )
    out = server_adam(lr=0.1).step(current, aggregate)
    assert list(out) == ["w", "steps", "mask"]
    assert out["w"].dtype == np.float32
    np.testing.assert_allclose(out["w"].numpy(), 0.1 * 0.1 / (np.sqrt(0.01 + 1e-18) + 1e-9))
    assert out["steps"] == aggregate["steps"] and out["mask"] == aggregate["mask"]


def test_a_model_whose_arrays_change_between_rounds_is_a_round_error():
    optimizer = server_adam()
    optimizer.step(record([0.0, 0.0]), record([1.0, 1.0]))
    with pytest.raises(RoundError, match=r"changed from \{'w': \(2,\)\} to \{'w': \(3,\)\}"):
        optimizer.step(record([0.0, 0.0, 0.0]), record([1.0, 1.0, 1.0]))
    optimizer.reset()
    optimizer.step(record([0.0, 0.0, 0.0]), record([1.0, 1.0, 1.0]))


def test_an_aggregate_unlike_the_model_is_a_round_error():
    current = ArrayRecord({"w": np.zeros(2), "b": np.zeros(1)})
    with pytest.raises(RoundError, match="do not match the current model's"):
        server_yogi().step(current, ArrayRecord({"w": np.zeros(2)}))


def test_reprs_show_the_parameters():
    assert repr(server_adam()) == "server_adam(lr=0.01, beta_1=0.9, beta_2=0.99, tau=1e-09)"
    assert repr(server_momentum()) == "server_momentum(lr=1.0, momentum=0.9, nesterov=False)"
    assert repr(server_adagrad()) == "server_adagrad(lr=0.1, beta_1=0.0, tau=1e-09)"
    assert repr(server_yogi()) == "server_yogi(lr=0.01, beta_1=0.9, beta_2=0.99, tau=0.001)"
    assert "server_yogi(lr=0.05" in repr(FedYogi(eta=0.05))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: server_momentum(lr=0.0), r"server_momentum: lr must be positive .* got 0\.0"),
        (lambda: server_momentum(lr=float("inf")), "lr must be positive and finite, got inf"),
        (lambda: server_momentum(momentum=1.0), r"momentum must be in \[0, 1\), got 1\.0"),
        (lambda: server_momentum(momentum=-0.1), r"momentum must be in \[0, 1\), got -0\.1"),
        (lambda: server_adagrad(tau=0.0), "server_adagrad: tau must be positive"),
        (lambda: server_adagrad(beta_1=1.5), r"server_adagrad: beta_1 must be in \[0, 1\)"),
        (lambda: server_adam(beta_1=float("nan")), r"beta_1 must be in \[0, 1\), got nan"),
        (lambda: server_adam(beta_2=1.0), r"server_adam: beta_2 must be in \[0, 1\)"),
        (lambda: server_yogi(tau=-1e-3), "server_yogi: tau must be positive"),
        (lambda: server_yogi(lr="0.1"), "server_yogi: lr must be a number, got '0.1'"),
        (lambda: FedAvgM(server_learning_rate=-1.0), "FedAvgM: server_learning_rate must be"),
        (lambda: FedAvgM(server_momentum=1.0), r"FedAvgM: server_momentum must be in \[0, 1\)"),
        (lambda: FedAdagrad(eta=0), "FedAdagrad: eta must be positive and finite, got 0"),
        (lambda: FedAdam(beta_2=2.0), r"FedAdam: beta_2 must be in \[0, 1\), got 2\.0"),
        (lambda: FedYogi(tau=0), "FedYogi: tau must be positive and finite, got 0"),
    ],
)
def test_bad_parameters_fail_at_construction_naming_them(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_presets_take_fedavgs_options():
    strategy = FedAdam(eta=0.1, min_train_nodes=3, fraction_evaluate=0.0)
    assert strategy.min_train_nodes == 3 and strategy.fraction_evaluate == 0.0
    assert repr(strategy.aggregation) == (
        "chain(weighted_average(), server_adam(lr=0.1, beta_1=0.9, beta_2=0.99, tau=1e-09))"
    )


def halving_train(msg, context):
    """Each node answers half the model it got plus its id, weighted by 10 * its id."""
    received = msg.content["arrays"]
    arrays = ArrayRecord({k: a.numpy() / 2 + context.node_id for k, a in received.items()})
    metrics = MetricRecord({"num-examples": context.node_id * 10})
    return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))


def test_fedadam_end_to_end_follows_the_closed_form(make_grid, global_arrays):
    strategy = FedAdam(eta=0.1, beta_1=0.5, beta_2=0.9, tau=1e-3, fraction_evaluate=0.0)
    result = strategy.start(make_grid(halving_train), global_arrays, num_rounds=3)
    x, m, v = np.float32(0.0), 0.0, 1e-6
    for _ in range(3):
        mean = np.float32(np.float64(x) / 2 + (1 * 10 + 2 * 20 + 3 * 30) / 60)
        delta = np.float64(mean) - np.float64(x)
        m = 0.5 * m + 0.5 * delta
        v = 0.9 * v + 0.1 * delta**2
        x = np.float32(np.float64(x) + 0.1 * m / (np.sqrt(v) + 1e-3))
    for name in ("w", "b"):
        assert result.arrays[name].dtype == np.float32
        np.testing.assert_allclose(result.arrays[name].numpy(), x, rtol=1e-6)


def test_each_run_starts_from_fresh_optimizer_state(make_grid, global_arrays):
    strategy = FedYogi(eta=0.1, fraction_evaluate=0.0)
    grid = make_grid(halving_train)
    first = strategy.start(grid, global_arrays, num_rounds=2).arrays
    assert strategy.start(grid, global_arrays, num_rounds=2).arrays == first


def test_fedavgm_without_momentum_runs_as_fedavg(make_grid, global_arrays):
    grid = make_grid(halving_train)
    plain = FedAvg(fraction_evaluate=0.0).start(grid, global_arrays, num_rounds=2).arrays
    strategy = FedAvgM(server_learning_rate=1.0, server_momentum=0.0, fraction_evaluate=0.0)
    assert strategy.start(grid, global_arrays, num_rounds=2).arrays == plain
