import numpy as np
import pytest
import torch

from pollinate import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from pollinate.errors import RecordError


def test_array_wraps_numpy_without_copy():
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    array = Array(data)
    assert np.shares_memory(array.numpy(), data)
    assert array.shape == (2, 3) and array.dtype == np.float32 and array.nbytes == 24


def test_array_keeps_zero_dim_and_makes_strided_data_contiguous():
    assert Array(np.float32(3.0)).shape == ()
    strided = Array(np.arange(10.0)[::2])
    assert strided.numpy().flags.c_contiguous and strided.shape == (5,)


def test_array_is_read_only():
    array = Array(np.zeros(3))
    with pytest.raises(ValueError, match="read-only"):
        array.numpy()[0] = 1.0


def test_array_reads_a_cpu_tensor_through_dlpack_without_copy():
    tensor = torch.arange(4, dtype=torch.float32)
    array = Array(tensor)
    assert np.shares_memory(array.numpy(), tensor.numpy())
    assert array.dtype == np.float32


def test_array_refuses_a_tensor_that_needs_grad_with_the_fix():
    with pytest.raises(RecordError, match=r"Parameter could not be read.*detach it"):
        Array(torch.nn.Parameter(torch.ones(2)))


def test_array_record_takes_a_state_dict_as_it_is():
    model = torch.nn.Linear(3, 2)
    record = ArrayRecord(model.state_dict())
    assert list(record) == ["weight", "bias"]
    assert np.shares_memory(record["weight"].numpy(), model.weight.detach().numpy())


def test_array_rejects_object_dtype():
    with pytest.raises(RecordError, match="numeric or boolean dtype"):
        Array(np.array(["a", "b"], dtype=object))


def test_array_rejects_unknown_type():
    with pytest.raises(RecordError, match="numpy arrays and CPU tensors"):
        Array({"not": "an array"})


def test_array_equality_compares_dtype_shape_and_values():
    assert Array(np.array([1.0, np.nan])) == Array(np.array([1.0, np.nan]))
    assert Array(np.zeros(2, np.float32)) != Array(np.zeros(2, np.float64))


def test_array_record_from_numpy_names_by_position():
    record = ArrayRecord.from_numpy([np.zeros(2), np.ones(3)])
    assert list(record) == ["0", "1"]
    np.testing.assert_array_equal(record.to_numpy()[1], np.ones(3))


def test_array_record_error_names_the_key():
    with pytest.raises(RecordError, match=r"ArrayRecord\['weights'\]"):
        ArrayRecord({"weights": "not an array"})


def test_metric_record_accepts_numbers_lists_and_numpy_scalars():
    record = MetricRecord({"a": 1, "b": 0.5, "c": [1, 2], "d": [0.5, 1], "e": np.float32(2.0)})
    assert record["e"] == 2.0 and isinstance(record["e"], float)
    assert record["d"] == [0.5, 1.0]


@pytest.mark.parametrize("value", ["text", True, None, {"x": 1}, [1, "a"]])
def test_metric_record_rejects_other_types_naming_the_key(value):
    with pytest.raises(RecordError, match=r"MetricRecord\['acc'\]"):
        MetricRecord({"acc": value})


def test_metric_record_takes_zero_dim_arrays_as_numbers():
    assert MetricRecord({"acc": np.array(0.5)})["acc"] == 0.5


def test_config_record_accepts_every_config_type():
    values = {
        "i": 1,
        "f": 0.1,
        "s": "x",
        "b": b"\x00",
        "t": True,
        "li": [1, 2],
        "ls": ["a"],
        "lb": [True, False],
        "empty": [],
    }
    assert dict(ConfigRecord(values)) == values


@pytest.mark.parametrize("value", [{"x": 1}, [1, "a"], None, [[1]]])
def test_config_record_rejects_other_types_naming_the_key(value):
    with pytest.raises(RecordError, match=r"ConfigRecord\['lr'\]"):
        ConfigRecord({"lr": value})


def test_config_value_is_typed_and_checked():
    config = ConfigRecord({"lr": 1, "name": "x", "on": True})
    assert config.value("lr", float) == 1.0 and isinstance(config.value("lr", float), float)
    assert config.value("name", str) == "x" and config.value("on", bool) is True
    with pytest.raises(RecordError, match=r"ConfigRecord\['name'\] is str 'x', expected int"):
        config.value("name", int)
    with pytest.raises(RecordError, match="expected int"):
        config.value("on", int)


def test_record_keys_must_be_strings():
    with pytest.raises(RecordError, match="keys must be str"):
        MetricRecord({1: 2})


def test_missing_key_error_lists_known_keys():
    with pytest.raises(KeyError, match="'a'"):
        MetricRecord({"a": 1})["b"]


def test_record_dict_holds_records_and_lists_them_by_kind():
    rd = RecordDict({"arrays": ArrayRecord(), "metrics": MetricRecord(), "config": ConfigRecord()})
    assert list(rd.array_records) == ["arrays"]
    assert list(rd.metric_records) == ["metrics"]
    assert list(rd.config_records) == ["config"]


def test_record_dict_rejects_plain_values_naming_the_key():
    with pytest.raises(RecordError, match=r"RecordDict\['metrics'\]"):
        RecordDict({"metrics": {"acc": 1.0}})


@pytest.mark.parametrize(
    ("record", "value"),
    [
        (MetricRecord, 2**70),
        (MetricRecord, [1, -(2**63) - 1]),
        (MetricRecord, np.uint64(2**63)),
        (ConfigRecord, 2**63),
        (ConfigRecord, [2**100]),
    ],
)
def test_ints_beyond_64_bits_are_refused_when_set_naming_the_key(record, value):
    with pytest.raises(RecordError, match=r"\['big'\] .*does not fit in 64 bits"):
        record({"big": value})


def test_ints_at_the_64_bit_edges_are_kept():
    edges = [-(2**63), 2**63 - 1]
    assert MetricRecord({"x": edges})["x"] == edges
    assert ConfigRecord({"x": 2**63 - 1})["x"] == 2**63 - 1


def test_a_huge_int_is_named_by_its_size_not_printed():
    with pytest.raises(RecordError, match=r"an int of 20000 bits does not fit") as refused:
        MetricRecord({"big": 2**19999})
    assert len(str(refused.value)) < 300


@pytest.mark.parametrize("record", [MetricRecord, ConfigRecord])
def test_a_list_longer_than_the_limit_is_refused_when_set(record):
    from pollinate.records import MAX_LIST_ITEMS

    assert len(record({"ok": [1.0] * MAX_LIST_ITEMS})["ok"]) == MAX_LIST_ITEMS
    with pytest.raises(
        RecordError, match=r"\['x'\] holds 1,048,577 items, more than the 1,048,576"
    ):
        record({"x": np.zeros(MAX_LIST_ITEMS + 1)})


def test_a_snapshot_copies_only_memory_its_maker_can_still_change():
    shared = np.zeros(3, np.float32)
    array = Array(shared)
    kept = array.snapshot()
    shared += 1.0  # the maker trains on: the snapshot is as it was
    assert kept.numpy().tolist() == [0.0, 0.0, 0.0] and array.numpy().tolist() == [1.0] * 3

    decoded = Array(np.frombuffer(b"\x00" * 12, np.float32))  # read-only, as a decoded message
    assert decoded.snapshot() is decoded

    view_of_writable = shared[:2]
    view_of_writable.flags.writeable = False  # read-only itself, but its base is writable
    assert not np.shares_memory(Array(view_of_writable).snapshot().numpy(), shared)


def test_a_record_snapshot_keeps_names_and_values():
    shared = np.arange(4.0)
    record = ArrayRecord({"w": shared, "b": np.frombuffer(b"\x00" * 8, np.float64)})
    kept = record.snapshot()
    shared[:] = -1.0
    assert list(kept) == ["w", "b"] and kept["w"].numpy().tolist() == [0.0, 1.0, 2.0, 3.0]
    assert kept["b"] is record["b"]
