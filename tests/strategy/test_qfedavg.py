import numpy as np
import pytest

from pollinate import ArrayRecord, MetricRecord, RecordDict
from pollinate.errors import ConfigError, RoundError
from pollinate.strategy._compose import Update
from pollinate.strategy._qfedavg import QFedAvg, qfedavg


def _update(node_id, arrays, loss):
    record = ArrayRecord({k: np.asarray(v, np.float32) for k, v in arrays.items()})
    return Update(node_id, record, 1.0, MetricRecord({"train-loss": loss}))


def _global(arrays):
    return ArrayRecord({k: np.asarray(v, np.float32) for k, v in arrays.items()})


def test_step_matches_a_hand_computed_reference():
    # L = 1/0.5 = 2, q = 1.
    # node 1: delta = 2*([1,2]-[0,2]) = [2,0], |delta|^2 = 4, F = 2: Delta = [4,0], h = 4 + 4
    # node 2: delta = 2*([1,2]-[1,1]) = [0,2], |delta|^2 = 4, F = 1: Delta = [0,2], h = 4 + 2
    # w = [1,2] - [4,2]/14 = [5/7, 13/7]
    current = _global({"w": [1.0, 2.0]})
    updates = [_update(1, {"w": [0.0, 2.0]}, 2.0), _update(2, {"w": [1.0, 1.0]}, 1.0)]
    result = qfedavg(q=1.0, qffl_learning_rate=0.5).aggregate(updates, current)
    np.testing.assert_allclose(result["w"].numpy(), [5 / 7, 13 / 7], rtol=1e-6)
    assert result["w"].dtype == np.float32


def test_the_norm_spans_the_whole_model():
    # The same numbers as above, the model cut into two one-element arrays.
    current = _global({"a": [1.0], "b": [2.0]})
    updates = [
        _update(1, {"a": [0.0], "b": [2.0]}, 2.0),
        _update(2, {"a": [1.0], "b": [1.0]}, 1.0),
    ]
    result = qfedavg(q=1.0, qffl_learning_rate=0.5).aggregate(updates, current)
    np.testing.assert_allclose([result["a"].numpy()[0], result["b"].numpy()[0]], [5 / 7, 13 / 7])


def test_fractional_q_uses_the_loss_powers():
    # q = 0.5, L = 1: node 1 alone: delta = [1], F = 4: Delta = 2, h = 0.5 * 4^-0.5 * 1 + 2
    current = _global({"w": [1.0]})
    result = qfedavg(q=0.5, qffl_learning_rate=1.0).aggregate(
        [_update(1, {"w": [0.0]}, 4.0)], current
    )
    np.testing.assert_allclose(result["w"].numpy(), [1 - 2 / 2.25], rtol=1e-6)


def test_q_zero_is_the_unweighted_mean_of_the_models():
    # q = 0: Delta_k = L (w - w_k), h_k = L, so w - sum L (w - w_k) / (n L) = mean(w_k),
    # whatever the losses, the learning rate or the nodes' weights.
    rng = np.random.default_rng(0)
    current = _global({"w": rng.normal(size=(2, 3)), "b": rng.normal(size=3)})
    models = [{"w": rng.normal(size=(2, 3)), "b": rng.normal(size=3)} for _ in range(3)]
    updates = [
        _update(i, m, loss) for i, (m, loss) in enumerate(zip(models, [0.1, 5.0, 0.0], strict=True))
    ]
    result = qfedavg(q=0.0, qffl_learning_rate=0.01).aggregate(updates, current)
    for name in ("w", "b"):
        expected = np.mean([np.asarray(m[name], np.float32) for m in models], axis=0)
        np.testing.assert_allclose(result[name].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_higher_q_pulls_toward_the_node_with_the_higher_loss():
    current = _global({"w": [0.0]})
    updates = [_update(1, {"w": [-1.0]}, 0.5), _update(2, {"w": [1.0]}, 2.0)]
    low = qfedavg(q=0.0, qffl_learning_rate=1.0).aggregate(updates, current)["w"].numpy()[0]
    high = qfedavg(q=2.0, qffl_learning_rate=1.0).aggregate(updates, current)["w"].numpy()[0]
    assert low == pytest.approx(0.0, abs=1e-7)
    # q = 2: Delta = 0.25 * 1 + 4 * -1, h = (2 * 0.5 * 1 + 0.25) + (2 * 2 * 1 + 4)
    assert high == pytest.approx(3.75 / 9.25, rel=1e-6)


def test_a_missing_loss_is_a_round_error_naming_the_key():
    update = Update(7, _global({"w": [0.0]}), 1.0, MetricRecord({"num-examples": 3}))
    with pytest.raises(RoundError, match=r"'train-loss'.*node 7"):
        qfedavg(q=0.2, qffl_learning_rate=0.1).aggregate([update], _global({"w": [1.0]}))


def test_no_updates_gives_none():
    assert qfedavg(q=0.2, qffl_learning_rate=0.1).aggregate([], _global({"w": [1.0]})) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"q": -1.0}, "q must be a finite number >= 0, got -1.0"),
        ({"qffl_learning_rate": 0.0}, "qffl_learning_rate must be a finite number > 0, got 0.0"),
        ({"qffl_learning_rate": float("nan")}, "qffl_learning_rate must be a finite number > 0"),
    ],
)
def test_bad_parameters_fail_at_construction(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        QFedAvg(**kwargs)


def test_qfedavg_runs_rounds_on_a_grid(make_grid, global_arrays):
    def train(msg, context):
        arrays = ArrayRecord(
            {k: np.full(a.shape, context.node_id, a.dtype) for k, a in global_arrays.items()}
        )
        metrics = MetricRecord({"num-examples": 10, "train-loss": float(context.node_id)})
        return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))

    strategy = QFedAvg(q=0.0, qffl_learning_rate=0.1, fraction_evaluate=0.0)
    result = strategy.start(make_grid(train), global_arrays, num_rounds=2)
    np.testing.assert_allclose(result.arrays["w"].numpy(), 2.0, rtol=1e-6)
    assert "qfedavg(q=0.0" in repr(strategy)


def test_counters_are_neither_stepped_nor_counted_in_the_norm():
    current = ArrayRecord({"w": np.zeros(2), "steps": np.array([500], np.int64)})
    with_counter = Update(
        1,
        ArrayRecord({"w": np.ones(2), "steps": np.array([600], np.int64)}),
        1.0,
        MetricRecord({"train-loss": 2.0}),
    )
    without = Update(1, ArrayRecord({"w": np.ones(2)}), 1.0, MetricRecord({"train-loss": 2.0}))
    stepped = qfedavg(1.0, 0.1).aggregate([with_counter], current)
    alone = qfedavg(1.0, 0.1).aggregate([without], ArrayRecord({"w": np.zeros(2)}))
    np.testing.assert_array_equal(stepped["w"].numpy(), alone["w"].numpy())
    assert stepped["steps"].numpy()[0] == 500


def test_a_loss_too_large_for_its_power_is_a_round_error_not_an_overflow():
    current = ArrayRecord({"w": np.zeros(2)})
    huge = Update(1, ArrayRecord({"w": np.ones(2)}), 1.0, MetricRecord({"train-loss": 1e70}))
    with pytest.raises(RoundError, match=r"overflowed.*lower q"):
        qfedavg(5.0, 0.1).aggregate([huge], current)


def test_qfedavg_given_a_chain_says_what_to_use_instead():
    from pollinate.privacy import dp_fixed_clip
    from pollinate.strategy import chain

    aggregation = chain(dp_fixed_clip(1.0, 1.0))
    with pytest.raises(
        ConfigError, match=r"FedAvg\(aggregation=chain\(dp_fixed_clip\(\.\.\.\)\)\)"
    ):
        QFedAvg(aggregation=aggregation)
