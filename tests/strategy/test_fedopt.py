"""Server optimizers match their closed forms; FedAvgM/FedAdagrad/FedAdam/FedYogi use them."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pollinate import ArrayRecord, FedAvg, MetricRecord, RecordDict
from pollinate.errors import ConfigError, RoundError
from pollinate.strategy import norm_bound
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
    """The models after each step, each step starting from the last one's model and state."""
    models, state = [], optimizer.init(record(current))
    for aggregate in aggregates:
        out, state = optimizer.update(record(current), record(aggregate), state)
        current = out["w"].numpy()
        models.append(current)
    return models


def step(optimizer, current, aggregate):
    """One step from the optimizer's starting state: the new model."""
    out, _ = optimizer.update(current, aggregate, optimizer.init(current))
    return out


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
    optimizer = server_momentum(server_learning_rate=0.7, server_momentum=0.6, nesterov=nesterov)
    got = run(optimizer)
    for step, expected in zip(got, momentum_closed_form(0.7, 0.6, nesterov), strict=True):
        np.testing.assert_allclose(step, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("optimizer", "second_moment", "params"),
    [
        (server_adagrad, adagrad_v, {"eta": 0.1, "tau": 1e-9}),
        (server_adagrad, adagrad_v, {"eta": 0.3, "beta_1": 0.5, "tau": 0.01}),
        (server_adam, adam_v, {"eta": 0.01, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-9}),
        (server_adam, adam_v, {"eta": 0.5, "beta_1": 0.3, "beta_2": 0.7, "tau": 0.1}),
        (server_yogi, yogi_v, {"eta": 0.01, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3}),
        (server_yogi, yogi_v, {"eta": 0.5, "beta_1": 0.3, "beta_2": 0.7, "tau": 2.0}),
    ],
)
def test_adaptive_optimizers_match_their_closed_form_over_two_steps(
    optimizer, second_moment, params
):
    expected = adaptive_closed_form(
        second_moment,
        params["eta"],
        params.get("beta_1", 0.0),
        params.get("beta_2", 0.0),
        params["tau"],
    )
    for step, want in zip(run(optimizer(**params)), expected, strict=True):
        np.testing.assert_allclose(step, want, rtol=1e-12, atol=1e-15)


def test_yogi_second_moment_moves_both_ways():
    # tau=2: v starts at 4, above the small deltas' squares (sign +) and below 3**2 (sign -).
    optimizer = server_yogi(eta=1.0, beta_1=0.0, beta_2=0.5, tau=2.0)
    out = step(optimizer, record([0.0, 0.0]), record([1.0, 3.0]))["w"].numpy()
    v = np.array([4 - 0.5 * 1, 4 + 0.5 * 9])
    np.testing.assert_allclose(out, np.array([1.0, 3.0]) / (np.sqrt(v) + 2.0), rtol=1e-12)


def test_adagrad_first_step_from_zero_state_is_lr_times_the_sign():
    out = run(server_adagrad(eta=0.1, tau=1e-12), aggregates=AGGREGATES[:1])[0]
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
    fedavg, _ = chain().update(round_updates, current, ArrayRecord())
    momentum = chain(
        server_momentum(server_learning_rate=1.0, server_momentum=0.0, nesterov=nesterov)
    )
    state = momentum.init(current)
    for _ in range(2):  # the state (zero momentum) must not matter on later rounds either
        got, state = momentum.update(round_updates, current, state)
        assert got["w"].dtype == dtype
        np.testing.assert_array_equal(got["w"].numpy(), fedavg["w"].numpy())


def test_an_optimizer_composes_after_an_explicit_aggregator():
    round_updates = updates([[1.0, 2.0], [3.0, 6.0]], [1.0, 3.0])
    current = ArrayRecord({"w": np.zeros(2)})
    explicit = chain(weighted_average(), server_adam(eta=0.1))
    default = chain(server_adam(eta=0.1))
    got = [c.update(round_updates, current, c.init(current)) for c in (explicit, default)]
    expected = step(server_adam(eta=0.1), current, ArrayRecord({"w": np.array([2.5, 5.0])}))
    assert got[0] == got[1] and got[0][0] == expected


def test_state_is_a_value_the_step_takes_and_gives_back():
    optimizer = server_momentum(server_learning_rate=1.0, server_momentum=0.5)
    state = optimizer.init(record([0.0]))
    assert list(state) == ["0/w"] and state["0/w"].numpy()[0] == 0.0
    first, after = optimizer.update(record([0.0]), record([1.0]), state)
    second, _ = optimizer.update(record([0.0]), record([1.0]), after)
    assert first["w"].numpy()[0] == 1.0 and second["w"].numpy()[0] == 1.5  # v = 0.5 * 1 + 1
    assert after["0/w"].numpy()[0] == 1.0


@pytest.mark.parametrize(
    "optimizer",
    [server_momentum(server_momentum=0.5), server_adagrad(), server_adam(), server_yogi()],
    ids=repr,
)
def test_update_is_pure_the_same_state_gives_the_same_step_and_is_not_changed(optimizer):
    current, aggregate = record(CURRENT), record(AGGREGATES[0])
    state = optimizer.init(current)
    before = {k: np.array(a.numpy()) for k, a in state.items()}
    once = optimizer.update(current, aggregate, state)
    twice = optimizer.update(current, aggregate, state)
    assert once == twice  # the same model and the same next state, bit for bit
    assert once[1] != state  # the next state moved...
    for key, data in before.items():  # ...and the one given is as it was
        np.testing.assert_array_equal(state[key].numpy(), data)


def test_a_chain_threads_its_optimizers_states_and_starts_afresh_from_init():
    aggregation = chain(server_adam(eta=0.1))
    round_updates = updates([[1.0]], [1.0])
    current = ArrayRecord({"w": np.zeros(1)})
    state = aggregation.init(current)
    assert list(state) == ["0:0/w", "0:1/w"]
    first, after = aggregation.update(round_updates, current, state)
    assert aggregation.update(round_updates, current, after)[0] != first
    assert aggregation.update(round_updates, current, aggregation.init(current))[0] == first


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
    out = step(server_adam(eta=0.1), current, aggregate)
    assert list(out) == ["w", "steps", "mask"]
    assert out["w"].dtype == np.float32
    np.testing.assert_allclose(out["w"].numpy(), 0.1 * 0.1 / (np.sqrt(0.01 + 1e-18) + 1e-9))
    assert out["steps"] == aggregate["steps"] and out["mask"] == aggregate["mask"]


def test_a_model_whose_arrays_change_between_rounds_is_a_round_error():
    optimizer = server_adam()
    _, state = optimizer.update(
        record([0.0, 0.0]), record([1.0, 1.0]), optimizer.init(record([0.0, 0.0]))
    )
    with pytest.raises(RoundError, match=r"changed from \{'w': \(2,\)\} to \{'w': \(3,\)\}"):
        optimizer.update(record([0.0, 0.0, 0.0]), record([1.0, 1.0, 1.0]), state)
    step(optimizer, record([0.0, 0.0, 0.0]), record([1.0, 1.0, 1.0]))  # a new run: a new state


def test_an_aggregate_unlike_the_model_is_a_round_error():
    current = ArrayRecord({"w": np.zeros(2), "b": np.zeros(1)})
    with pytest.raises(RoundError, match="do not match the current model's"):
        step(server_yogi(), current, ArrayRecord({"w": np.zeros(2)}))


def test_reprs_show_the_parameters():
    assert repr(server_adam()) == "server_adam(eta=0.01, beta_1=0.9, beta_2=0.99, tau=1e-09)"
    assert repr(server_momentum()) == (
        "server_momentum(server_learning_rate=1.0, server_momentum=0.9, nesterov=False)"
    )
    assert repr(server_adagrad()) == "server_adagrad(eta=0.1, beta_1=0.0, tau=1e-09)"
    assert repr(server_yogi()) == "server_yogi(eta=0.01, beta_1=0.9, beta_2=0.99, tau=0.001)"
    assert "server_yogi(eta=0.05" in repr(FedYogi(eta=0.05))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: server_momentum(server_learning_rate=0.0),
            r"server_momentum: server_learning_rate must be positive .* got 0\.0",
        ),
        (
            lambda: server_momentum(server_learning_rate=float("inf")),
            "server_learning_rate must be positive and finite, got inf",
        ),
        (
            lambda: server_momentum(server_momentum=1.0),
            r"server_momentum must be in \[0, 1\), got 1\.0",
        ),
        (
            lambda: server_momentum(server_momentum=-0.1),
            r"server_momentum must be in \[0, 1\), got -0\.1",
        ),
        (lambda: server_adagrad(tau=0.0), "server_adagrad: tau must be positive"),
        (lambda: server_adagrad(beta_1=1.5), r"server_adagrad: beta_1 must be in \[0, 1\)"),
        (lambda: server_adam(beta_1=float("nan")), r"beta_1 must be in \[0, 1\), got nan"),
        (lambda: server_adam(beta_2=1.0), r"server_adam: beta_2 must be in \[0, 1\)"),
        (lambda: server_yogi(tau=-1e-3), "server_yogi: tau must be positive"),
        (lambda: server_yogi(eta="0.1"), "server_yogi: eta must be a number, got '0.1'"),
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
        "chain(weighted_average(), server_adam(eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-09))"
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


@pytest.mark.parametrize("strategy", [FedAdam, FedAdagrad, FedYogi, FedAvgM])
def test_a_server_optimizer_strategy_given_a_chain_points_to_fedavg_with_one_chain(strategy):
    with pytest.raises(ConfigError, match=r"FedAvg\(aggregation=chain\(\.\.\., server_"):
        strategy(aggregation=chain(norm_bound(1.0)))
