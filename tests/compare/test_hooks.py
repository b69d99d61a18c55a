import numpy as np
import pytest

from pollinate import Message, MetricRecord, RecordDict
from pollinate.compare import Predictions, label_counts
from pollinate.compare._hooks import read_label_counts
from pollinate.errors import AppError, RecordError
from pollinate.message import ErrorCode


def test_accuracy_overall_and_among_some_labels():
    predictions = Predictions([0, 1, 1, 2, 2, 2], [0, 1, 0, 2, 1, 1])
    assert predictions.accuracy() == pytest.approx(3 / 6)
    assert predictions.accuracy(frozenset({1})) == pytest.approx(1 / 2)
    assert predictions.accuracy(frozenset({2})) == pytest.approx(1 / 3)
    assert np.isnan(predictions.accuracy(frozenset({7})))  # no example to score


def test_whole_float_labels_are_accepted_as_integers():
    predictions = Predictions(np.array([1.0, 2.0]), np.array([1, 2], dtype=np.int32), loss=0.5)
    assert predictions.labels.dtype == np.int64 and predictions.loss == 0.5


@pytest.mark.parametrize(
    ("labels", "predicted", "message"),
    [
        ([0, 1], [0], "2 labels but 1 predictions"),
        ([[0.1, 0.9]], [1], r"1-D.*argmax"),
        ([0.5, 1.0], [0, 1], "integer class labels"),
        ([], [], "empty"),
    ],
)
def test_malformed_predictions_say_what_to_fix(labels, predicted, message):
    with pytest.raises(RecordError, match=message):
        Predictions(labels, predicted)


def test_label_counts_count_each_label():
    assert dict(label_counts(np.array([3, 1, 3, 3]))) == {"1": 1, "3": 3}


def _query() -> Message:
    return Message.create(RecordDict(), 1, "query.label-counts")


def test_a_node_without_the_handler_counts_as_unknown():
    reply = _query().reply_error(ErrorCode.NO_HANDLER, "no handler")
    assert read_label_counts(reply) is None


def test_a_failing_handler_or_a_malformed_reply_is_the_apps_error():
    with pytest.raises(AppError, match="handler failed: boom"):
        read_label_counts(_query().reply_error(ErrorCode.CLIENT_APP_RAISED, "boom"))
    with pytest.raises(AppError, match="label_counts"):
        read_label_counts(_query().reply(RecordDict({"metrics": MetricRecord({"x": 1})})))
    with pytest.raises(AppError, match="label_counts"):
        read_label_counts(_query().reply(RecordDict()))


def test_a_well_formed_reply_gives_counts_by_label():
    reply = _query().reply(RecordDict({"metrics": label_counts([0, 0, 4])}))
    assert read_label_counts(reply) == {0: 2, 4: 1}


def test_a_node_without_training_examples_has_empty_counts():
    reply = _query().reply(RecordDict({"metrics": label_counts(np.array([], dtype=np.int64))}))
    assert read_label_counts(reply) == {}
