"""Flower's record types, Message and Context on pollinate's: constructors, views, converters."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import pollinate
from pollinate import wire
from pollinate.compat.flwr import _records
from pollinate.compat.flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from pollinate.errors import RecordError
from pollinate.server import check_reply


def test_app_types_are_pollinate_types_so_they_travel_everywhere():
    assert issubclass(ArrayRecord, pollinate.ArrayRecord)
    assert issubclass(MetricRecord, pollinate.MetricRecord)
    assert issubclass(ConfigRecord, pollinate.ConfigRecord)
    assert issubclass(RecordDict, pollinate.RecordDict)
    assert issubclass(Array, pollinate.Array)
    assert issubclass(Context, pollinate.Context)
    assert Error is pollinate.Error
    assert MessageType.TRAIN == "train"


def test_arrayrecord_from_a_state_dict_holds_its_values_then_and_goes_back_as_new_tensors():
    model = torch.nn.Linear(3, 2)
    record = ArrayRecord(model.state_dict())
    assert list(record) == ["weight", "bias"]
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight += 1.0  # the model trains on: the record keeps what it was given, as Flower's
    np.testing.assert_array_equal(record["weight"].numpy(), before.numpy())
    state_dict = record.to_torch_state_dict()
    assert torch.equal(state_dict["weight"], before)
    state_dict["weight"] += 1  # new, writable tensors, as Flower's
    assert not torch.equal(state_dict["weight"], before)
    with torch.no_grad():
        model.weight.copy_(before)
    assert ArrayRecord.from_torch_state_dict(model.state_dict()) == record


def test_arrayrecord_from_numpy_lists_names_by_position_and_returns_writable_copies():
    arrays = [np.arange(3.0), np.ones((2, 2), dtype=np.float32)]
    record = ArrayRecord(arrays)
    assert list(record) == ["0", "1"]
    out = record.to_numpy_ndarrays()
    out[0] += 1  # writable, and the record is untouched
    np.testing.assert_array_equal(record["0"].numpy(), np.arange(3.0))
    arrays[0] += 1  # nor does changing the list it was made from change it
    np.testing.assert_array_equal(record["0"].numpy(), np.arange(3.0))
    arrays[0] -= 1
    assert ArrayRecord.from_numpy_ndarrays(arrays) == record
    assert ArrayRecord(numpy_ndarrays=arrays) == record
    emptied = list(arrays)
    ArrayRecord(emptied, keep_input=False)
    assert emptied == []


def test_arrayrecord_refuses_two_sources_with_one_clear_error():
    with pytest.raises(RecordError, match="one source"):
        ArrayRecord([np.zeros(1)], numpy_ndarrays=[np.zeros(1)])
    with pytest.raises(RecordError, match="one source"):
        ArrayRecord([np.zeros(1)], [np.zeros(1)])


def test_array_takes_flowers_serialized_form():
    data = np.arange(6, dtype=np.int32).reshape(2, 3)
    buffer = io.BytesIO()
    np.save(buffer, data)
    array = Array("int32", [2, 3], "numpy.ndarray", buffer.getvalue())
    np.testing.assert_array_equal(array.numpy(), data)
    assert array.stype == "numpy.ndarray"
    assert Array("int32", [2, 3], "numpy.ndarray", array.data) == array
    assert Array.from_numpy_ndarray(data).shape == (2, 3)
    with pytest.raises(RecordError, match="serialized form"):
        Array("int32", [2, 3], "numpy.ndarray", "not bytes")


def test_metric_and_config_records_take_flowers_arguments():
    values = {"accuracy": 0.5, "num-examples": 10}
    assert dict(MetricRecord(values)) == values
    assert dict(MetricRecord(metric_dict=values)) == values
    assert dict(ConfigRecord({"lr": 0.1})) == {"lr": 0.1}
    assert len(ConfigRecord()) == 0
    config = {"lr": 0.1}
    ConfigRecord(config, keep_input=False)
    assert config == {}


def test_recorddict_gives_flower_views_that_write_through():
    core = pollinate.RecordDict(
        {"arrays": pollinate.ArrayRecord({"0": np.zeros(2)}), "config": pollinate.ConfigRecord()}
    )
    view = _records.flower_record_dict(core)
    arrays = view["arrays"]
    assert isinstance(arrays, ArrayRecord)
    assert arrays["0"] is core["arrays"]["0"]  # the same Array: no copy
    view["config"]["lr"] = 0.5
    assert core["config"]["lr"] == 0.5
    view["metrics"] = MetricRecord({"n": 1})
    assert core["metrics"]["n"] == 1
    assert isinstance(view.get("config"), ConfigRecord)
    assert view.get("nothing", "default") == "default"
    assert isinstance(view.array_records["arrays"], ArrayRecord)
    assert isinstance(view.config(), ConfigRecord)


def test_typed_record_views_write_through_as_flowers_do():
    # Flower's flower-simulation-step-by-step example keeps a node's history this way:
    # state.config_records["fit_metrics"] = ConfigRecord(), then appends to a list in it.
    state = pollinate.RecordDict({"arrays": pollinate.ArrayRecord({"0": np.zeros(2)})})
    view = _records.flower_record_dict(state)
    view.config_records["fit_metrics"] = ConfigRecord()
    view.metric_records["m"] = MetricRecord({"n": 1})
    assert isinstance(state["fit_metrics"], pollinate.ConfigRecord)
    assert "fit_metrics" in view.config_records and "arrays" not in view.config_records
    assert list(view.array_records) == ["arrays"] and len(view.metric_records) == 1
    fit_metrics = view.config_records["fit_metrics"]
    fit_metrics["train_loss_hist"] = [1.0]
    fit_metrics["train_loss_hist"].append(0.5)
    assert list(view.config_records["fit_metrics"]["train_loss_hist"]) == [1.0, 0.5]
    del view.metric_records["m"]
    assert "m" not in state
    with pytest.raises(RecordError, match=r"config_records.*ConfigRecord"):
        view.config_records["x"] = MetricRecord({"n": 1})
    with pytest.raises(KeyError):
        view.config_records["arrays"]


def _core_message(content: pollinate.RecordDict) -> pollinate.Message:
    return pollinate.Message.create(content, dst_node_id=3, message_type="train", run_id=7)


def test_flower_message_is_a_view_and_replies_are_pollinate_messages():
    core = _core_message(pollinate.RecordDict({"config": pollinate.ConfigRecord({"lr": 0.1})}))
    msg = _records.flower_message(core)
    assert msg.content["config"]["lr"] == 0.1
    assert not msg.has_error() and msg.has_content()
    assert msg.metadata.dst_node_id == 3 and msg.metadata.ttl == core.metadata.ttl_s
    reply = Message(content=RecordDict({"metrics": MetricRecord({"x": 1})}), reply_to=msg)
    back = _records.core_message(reply)
    assert isinstance(back, pollinate.Message)
    assert back.metadata.reply_to_message_id == core.metadata.message_id
    assert back.metadata.src_node_id == 3
    assert check_reply(core, back) is back
    decoded = wire.decode(wire.encode(back))  # it travels as it is
    assert decoded.content["metrics"]["x"] == 1


def test_error_replies_and_flower_1x_reply_spellings():
    msg = _records.flower_message(_core_message(pollinate.RecordDict()))
    error = Message(Error(code=1, reason="broken"), reply_to=msg)
    assert error.has_error() and error.error == Error(1, "broken")
    assert msg.create_reply(RecordDict()).metadata.reply_to_message_id == msg.metadata.message_id
    assert msg.create_error_reply(Error(2, "x")).error.code == 2


def test_new_messages_take_flowers_positional_form():
    msg = Message(RecordDict(), 4, MessageType.EVALUATE, group_id="1")
    core = _records.core_message(msg)
    assert (core.metadata.dst_node_id, core.metadata.message_type) == (4, "evaluate")
    assert core.metadata.group_id == "1"
    assert Message(content=RecordDict(), dst_node_id=2, message_type="query.x").metadata


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((RecordDict(),), {}, "dst_node_id and message_type"),
        ((), {}, "content .* or an error"),
        ((Error(1),), {"dst_node_id": 1, "message_type": "train"}, "answers another"),
        (({"arrays": 1}, 1, "train"), {}, "must be a RecordDict"),
    ],
)
def test_bad_messages_get_one_clear_error(args, kwargs, message):
    with pytest.raises(RecordError, match=message):
        Message(*args, **kwargs)


def test_core_message_refuses_what_is_not_a_message():
    with pytest.raises(RecordError, match="expected a Message, got NoneType"):
        _records.core_message(None)  # type: ignore[arg-type]


def test_flower_context_keeps_the_state_and_takes_flowers_argument_order():
    core = pollinate.Context(1, 2, {"partition-id": 0}, {"lr": 0.1}, pollinate.RecordDict())
    context = _records.flower_context(core)
    assert context.node_config["partition-id"] == 0 and context.run_config["lr"] == 0.1
    context.state["m"] = MetricRecord({"n": 1})
    assert core.state["m"]["n"] == 1
    assert isinstance(context.state["m"], MetricRecord)
    made = Context(1, 2, {}, RecordDict(), {"x": 1})
    assert made.run_config == {"x": 1} and isinstance(made.state, RecordDict)
    assert _records.flower_context(made) is made


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (("int64", [2], "numpy.ndarray"), "says dtype int64 but its data holds float32"),
        (("float32", [3], "numpy.ndarray"), r"says shape \[3\] but its data holds \(2,\)"),
        (("float32", [2], "torch.Tensor"), "stype 'torch.Tensor' is not supported"),
        (("nonsense", [2], "numpy.ndarray"), "'nonsense' is not a numpy dtype"),
    ],
)
def test_a_serialized_array_must_be_what_it_says(fields, message):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(2, np.float32))
    assert Array("float32", [2], "numpy.ndarray", buffer.getvalue()).shape == (2,)
    with pytest.raises(RecordError, match=message):
        Array(*fields, buffer.getvalue())


def test_serialized_array_data_is_never_unpickled():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    for data in (buffer.getvalue(), b"not an array"):
        with pytest.raises(RecordError, match="pickled data is refused"):
            Array("object", [1], "numpy.ndarray", data)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Context(1, 2, {}, {}, {}), "expected a RecordDict, got dict"),
        (lambda: ArrayRecord("abc"), "ArrayRecord takes a list of numpy arrays"),
        (lambda: Message(RecordDict(), "abc", "train"), "dst_node_id must be a node id"),
    ],
)
def test_wrong_arguments_to_the_flower_types_are_one_clear_error(make, message):
    with pytest.raises(RecordError, match=message):
        make()
