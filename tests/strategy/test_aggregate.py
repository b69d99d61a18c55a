import logging
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pollinate import ArrayRecord, MetricRecord
from pollinate.strategy import WeightedSum, weighted_mean


def record(value, dtype=np.float32):
    return ArrayRecord({"w": np.full((2, 2), value, dtype), "b": np.full(3, value, dtype)})


def test_weighted_sum_matches_the_hand_computed_mean():
    total = WeightedSum(record(0.0))
    total.add(record(1.0), 10)
    total.add(record(4.0), 30)
    mean = total.mean()
    np.testing.assert_allclose(mean["w"].numpy(), np.full((2, 2), 3.25))
    assert mean["w"].dtype == np.float32 and total.total_weight == 40


def test_mean_keeps_the_template_order_whatever_the_reply_order():
    total = WeightedSum(record(0.0))
    total.add(ArrayRecord({"b": np.ones(3, np.float32), "w": np.ones((2, 2), np.float32)}), 1)
    assert list(total.mean()) == ["w", "b"]


def test_extreme_weights_cannot_overflow_the_mean():
    for weight in (1e308, 5e-324):
        total = WeightedSum(record(0.0))
        for _ in range(3):
            total.add(record(1.0), weight)
        np.testing.assert_array_equal(total.mean()["b"].numpy(), np.ones(3, np.float32))


def test_weighted_sum_of_nothing_is_none():
    assert WeightedSum(record(0.0)).mean() is None


def test_integer_arrays_are_rounded_back_to_their_dtype():
    total = WeightedSum(ArrayRecord({"steps": np.zeros(2, np.int64)}))
    total.add(ArrayRecord({"steps": np.array([1, 2], np.int64)}), 1)
    total.add(ArrayRecord({"steps": np.array([2, 4], np.int64)}), 1)
    mean = total.mean()["steps"]
    assert mean.dtype == np.int64 and mean.numpy().tolist() == [2, 3]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.integers(1, 10_000)), min_size=1, max_size=8))
def test_streaming_mean_equals_batch_mean(updates):
    total = WeightedSum(record(0.0))
    for value, weight in updates:
        total.add(record(value), weight)
    values = np.array([v for v, _ in updates], dtype=np.float32).astype(np.float64)
    weights = np.array([w for _, w in updates], dtype=np.float64)
    expected = np.float32((values * weights).sum() / weights.sum())
    np.testing.assert_allclose(total.mean()["b"].numpy(), expected, rtol=1e-6, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.floats(-1e3, 1e3, width=32), st.lists(st.integers(1, 1000), min_size=1, max_size=6))
def test_mean_of_identical_updates_is_that_update(value, weights):
    total = WeightedSum(record(0.0))
    for weight in weights:
        total.add(record(value), weight)
    np.testing.assert_allclose(total.mean()["w"].numpy(), np.float32(value), rtol=1e-6)


def test_weighted_mean_of_metrics():
    records = [
        MetricRecord({"num-examples": 10, "accuracy": 0.5, "per-class": [1.0, 0.0]}),
        MetricRecord({"num-examples": 30, "accuracy": 0.9, "per-class": [0.0, 1.0]}),
    ]
    out = weighted_mean(records, "num-examples")
    assert out["num-examples"] == 40
    assert np.isclose(out["accuracy"], 0.8)
    np.testing.assert_allclose(out["per-class"], [0.25, 0.75])


def test_weighted_mean_averages_a_metric_only_over_the_records_that_have_it():
    records = [
        MetricRecord({"num-examples": 10, "loss": 1.0}),
        MetricRecord({"num-examples": 30, "loss": 2.0, "extra": 4.0}),
    ]
    out = weighted_mean(records, "num-examples")
    assert out["extra"] == 4.0 and np.isclose(out["loss"], 1.75)


BIG = 1e308


def test_huge_metrics_average_to_a_finite_value():
    records = [
        MetricRecord({"num-examples": 10, "loss": BIG, "per-class": [BIG, -BIG]}),
        MetricRecord({"num-examples": 30, "loss": BIG, "per-class": [BIG, -BIG]}),
    ]
    out = weighted_mean(records, "num-examples")
    assert out["loss"] == BIG and out["per-class"] == [BIG, -BIG]


def test_a_weight_total_that_overflows_is_set_aside_with_a_reason(caplog):
    records = [MetricRecord({"w": BIG, "loss": 1.0}), MetricRecord({"w": BIG, "loss": 3.0})]
    with caplog.at_level(logging.WARNING, logger="pollinate.strategy"):
        out = weighted_mean(records, "w")
    assert dict(out) == {"loss": 2.0}
    assert "metric 'w' is left out of the aggregate: the sum is not finite" in caplog.text


def test_a_mean_that_rounds_past_the_largest_float_is_set_aside_with_a_reason(caplog):
    top = np.finfo(np.float64).max
    records = [MetricRecord({"n": 1, "x": top}), MetricRecord({"n": 2, "x": top})]
    with caplog.at_level(logging.WARNING, logger="pollinate.strategy"):
        out = weighted_mean(records, "n")
    assert out.get("x") in (top, None)
    assert out.get("x") == top or "metric 'x' is left out" in caplog.text


def test_an_int_weight_total_beyond_64_bits_becomes_a_float():
    out = weighted_mean([MetricRecord({"n": 2**62}), MetricRecord({"n": 2**62})], "n")
    assert out["n"] == float(2**63)


finite_floats = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(min_value=5e-324, max_value=1e308), finite_floats, finite_floats),
        min_size=1,
        max_size=6,
    )
)
def test_metric_aggregates_are_finite_whatever_the_finite_inputs(rows):
    records = [MetricRecord({"w": w, "x": x, "xs": [x, y]}) for w, x, y in rows]
    out = weighted_mean(records, "w")
    for value in out.values():
        assert all(math.isfinite(v) for v in (value if isinstance(value, list) else [value]))
