"""Each kind of bad reply is set aside with a reason naming the node and the problem."""

import logging

import numpy as np
import pytest

from pollinate import ArrayRecord, FedAvg, MetricRecord, RecordDict
from pollinate.errors import RoundError

SHAPES = {"w": (2, 3), "b": (3,)}


def arrays_like(**overrides):
    values = {k: np.ones(shape, np.float32) for k, shape in SHAPES.items()}
    values.update(overrides)
    return ArrayRecord({k: v for k, v in values.items() if v is not None})


def reply_with(arrays=None, metrics=None, drop=()):
    def train(msg, context):
        if context.node_id != 2:
            return msg.reply(
                RecordDict({"arrays": arrays_like(), "metrics": MetricRecord({"num-examples": 10})})
            )
        content = RecordDict(
            {
                "arrays": arrays if arrays is not None else arrays_like(),
                "metrics": MetricRecord(metrics if metrics is not None else {"num-examples": 10}),
            }
        )
        for key in drop:
            del content[key]
        return msg.reply(content)

    return train


BAD_REPLIES = {
    "missing key": (reply_with(arrays=arrays_like(b=None)), "missing ['b']"),
    "extra key": (reply_with(arrays=arrays_like(extra=np.ones(1, np.float32))), "extra ['extra']"),
    "wrong shape": (
        reply_with(arrays=arrays_like(w=np.ones((3, 2), np.float32))),
        "has shape (3, 2)",
    ),
    "wrong dtype": (reply_with(arrays=arrays_like(w=np.ones((2, 3), np.float64))), "dtype float64"),
    "nan": (
        reply_with(arrays=arrays_like(b=np.array([0, np.nan, 0], np.float32))),
        "NaN or infinite",
    ),
    "inf": (
        reply_with(arrays=arrays_like(b=np.array([0, np.inf, 0], np.float32))),
        "NaN or infinite",
    ),
    "no arrays": (reply_with(drop=("arrays",)), "no ArrayRecord under 'arrays'"),
    "no metrics": (reply_with(drop=("metrics",)), "no MetricRecord under 'metrics'"),
    "no weight": (reply_with(metrics={"loss": 1.0}), "no weight 'num-examples'"),
    "zero weight": (reply_with(metrics={"num-examples": 0}), "positive finite number"),
    "negative weight": (reply_with(metrics={"num-examples": -5}), "positive finite number"),
    "nan weight": (reply_with(metrics={"num-examples": float("nan")}), "positive finite number"),
    "inf weight": (reply_with(metrics={"num-examples": float("inf")}), "positive finite number"),
    "weight over cap": (reply_with(metrics={"num-examples": 10**9}), "above the cap"),
    "nan metric": (
        reply_with(metrics={"num-examples": 10, "loss": float("nan")}),
        "metrics must be finite",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REPLIES))
def test_bad_reply_is_set_aside_and_the_round_goes_on(make_grid, global_arrays, caplog, case):
    train, reason = BAD_REPLIES[case]
    strategy = FedAvg(fraction_evaluate=0.0, max_weight=1e6)
    with caplog.at_level(logging.WARNING, logger="pollinate.strategy"):
        result = strategy.start(make_grid(train), global_arrays, num_rounds=1)
    phase = result.rounds[0].train
    assert (phase.num_ok, phase.num_failed) == (2, 1)
    assert phase.failures[0].node_id == 2
    assert reason in phase.failures[0].reason
    assert "node 2: " in caplog.text and reason in caplog.text
    np.testing.assert_array_equal(result.arrays["w"].numpy(), np.ones((2, 3), np.float32))


def test_huge_integer_weight_is_set_aside_not_a_crash(make_grid, global_arrays):
    train = reply_with(metrics={"num-examples": 10**400})
    result = FedAvg(fraction_evaluate=0.0).start(make_grid(train), global_arrays, num_rounds=1)
    reason = result.rounds[0].train.failures[0].reason  # refused where the handler set it
    assert "CLIENT_APP_RAISED" in reason and "an int of 1329 bits does not fit in 64" in reason


def test_a_message_that_is_not_a_reply_is_set_aside(make_grid, global_arrays):
    def train(msg, context):
        reply = reply_with()(msg, context)
        if context.node_id != 2:
            return reply
        return type(msg).create(reply.content, 0, "train")  # not built with msg.reply

    result = FedAvg(fraction_evaluate=0.0).start(make_grid(train), global_arrays, num_rounds=1)
    (failure,) = result.rounds[0].train.failures
    assert failure.node_id == 2 and "INVALID_REPLY" in failure.reason
    assert "msg.reply(content)" in failure.reason


def test_error_reply_is_set_aside_with_its_reason(make_grid, global_arrays, good_reply):
    def train(msg, context):
        if context.node_id == 1:
            raise ValueError("out of memory")
        return good_reply(msg)

    result = FedAvg(fraction_evaluate=0.0).start(make_grid(train), global_arrays, num_rounds=1)
    (failure,) = result.rounds[0].train.failures
    assert failure.node_id == 1 and "CLIENT_APP_RAISED" in failure.reason
    assert "ValueError: out of memory" in failure.reason


def test_round_fails_clearly_when_too_few_valid_replies_remain(
    make_grid, global_arrays, good_reply
):
    def only_node_1_is_good(msg, context):
        if context.node_id == 1:
            return good_reply(msg)
        bad = arrays_like(w=np.ones((3, 2), np.float32))
        return msg.reply(RecordDict({"arrays": bad, "metrics": MetricRecord({"num-examples": 1})}))

    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2)
    with pytest.raises(RoundError, match=r"round 1 train: 1 valid replies.*at least 2.*node 2: "):
        strategy.start(make_grid(only_node_1_is_good), global_arrays, num_rounds=1)


def test_evaluate_reply_without_weight_is_set_aside(make_grid, global_arrays, good_reply):
    def evaluate(msg, context):
        metrics = {"loss": 0.5} if context.node_id == 3 else {"loss": 0.5, "num-examples": 4}
        return msg.reply(RecordDict({"metrics": MetricRecord(metrics)}))

    result = FedAvg().start(make_grid(good_reply, evaluate=evaluate), global_arrays, num_rounds=1)
    phase = result.rounds[0].evaluate
    assert (phase.num_ok, phase.num_failed) == (2, 1)
    assert "no weight" in phase.failures[0].reason
