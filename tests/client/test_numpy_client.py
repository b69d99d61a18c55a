import numpy as np
import pytest

from pollinate import (
    ArrayRecord,
    ClientApp,
    ConfigRecord,
    Context,
    Message,
    NumPyClient,
    RecordDict,
)
from pollinate.message import ErrorCode


class AddOne(NumPyClient):
    def get_parameters(self, config):
        return [np.zeros(2, np.float32)]

    def fit(self, parameters, config):
        lr = config["lr"]
        return [p + lr for p in parameters], 10, {"node": self.context.node_id}

    def evaluate(self, parameters, config):
        return float(parameters[0].sum()), 5, {"accuracy": 0.75}


def send(client, message_type):
    app = ClientApp(client_fn=lambda context: client)
    arrays = ArrayRecord.from_numpy([np.ones(2, np.float32)])
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"lr": 0.5})})
    message = Message.create(content, 3, message_type)
    return app(message, Context(run_id=1, node_id=3))


def test_fit_becomes_a_train_reply_with_num_examples():
    reply = send(AddOne(), "train")
    np.testing.assert_allclose(reply.content["arrays"].to_numpy()[0], [1.5, 1.5])
    assert dict(reply.content["metrics"]) == {"node": 3, "num-examples": 10}


def test_fit_reply_keeps_the_names_the_server_used():
    app = ClientApp(client_fn=lambda context: AddOne())
    arrays = ArrayRecord({"fc.weight": np.ones(2, np.float32)})
    message = Message.create(
        RecordDict({"arrays": arrays, "config": ConfigRecord({"lr": 1.0})}), 1, "train"
    )
    reply = app(message, Context(run_id=1, node_id=1))
    assert list(reply.content["arrays"]) == ["fc.weight"]


def test_fit_returning_the_wrong_number_of_arrays_is_a_clear_error():
    class TooMany(AddOne):
        def fit(self, parameters, config):
            return [*parameters, parameters[0]], 1, {}

    reply = send(TooMany(), "train")
    assert "returned 2 arrays for a model of 1" in reply.error.reason


def test_evaluate_becomes_an_evaluate_reply_with_loss():
    reply = send(AddOne(), "evaluate")
    assert dict(reply.content["metrics"]) == {"accuracy": 0.75, "num-examples": 5, "loss": 2.0}


def test_get_parameters_answers_a_query():
    reply = send(AddOne(), "query.get-parameters")
    assert reply.content["arrays"].to_numpy()[0].shape == (2,)


class Broken(NumPyClient):
    def fit(self, parameters, config):
        return parameters, 10  # forgot the metrics

    def evaluate(self, parameters, config):
        return float("nan"), 5, {}


@pytest.mark.parametrize(
    ("message_type", "reason"),
    [
        ("train", "must return a tuple (arrays, num_examples, metrics)"),
        ("evaluate", "it must be a finite number"),
    ],
)
def test_bad_return_values_become_clear_error_replies(message_type, reason):
    reply = send(Broken(), message_type)
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED
    assert reason in reply.error.reason


def test_unimplemented_method_becomes_an_error_reply():
    reply = send(NumPyClient(), "train")
    assert "does not implement fit" in reply.error.reason


def test_client_fn_must_return_a_numpy_client():
    app = ClientApp(client_fn=lambda context: object())
    content = RecordDict({"arrays": ArrayRecord(), "config": ConfigRecord()})
    reply = app(Message.create(content, 1, "train"), Context(run_id=1, node_id=1))
    assert "client_fn must return a NumPyClient" in reply.error.reason
