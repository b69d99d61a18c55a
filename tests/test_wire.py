from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pollinate import wire
from pollinate.context import Context
from pollinate.errors import RecordError, WireError
from pollinate.message import Error, ErrorCode, Message, Metadata
from pollinate.records import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies ----------------------------------------------------------------------------

ints = st.integers(-(2**63), 2**63 - 1)
floats = st.floats()  # NaN, infinities and -0.0 included
texts = st.text(max_size=10)
keys = st.text(max_size=6)
blobs = st.binary(max_size=10)

DTYPES = [
    "|b1", "|i1", "|u1", "<i2", ">i4", "<i8", ">u2", "<u4", "<u8",
    "<f2", ">f4", "<f8", ">f8", "<c8", ">c16",
]  # fmt: skip

arrays = hnp.arrays(
    dtype=st.sampled_from(DTYPES).map(np.dtype),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
).map(Array)


def _lists(elements: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(elements, max_size=4)


metric_values = st.one_of(ints, floats, _lists(ints), _lists(floats))
config_values = st.one_of(
    ints, floats, texts, blobs, st.booleans(),
    *(_lists(s) for s in (ints, floats, texts, blobs, st.booleans())),
)  # fmt: skip
records = st.one_of(
    st.dictionaries(keys, arrays, max_size=3).map(ArrayRecord),
    st.dictionaries(keys, metric_values, max_size=3).map(MetricRecord),
    st.dictionaries(keys, config_values, max_size=3).map(ConfigRecord),
)
record_dicts = st.dictionaries(keys, records, max_size=3).map(RecordDict)
metadatas = st.builds(
    Metadata,
    run_id=ints,
    message_id=texts,
    src_node_id=ints,
    dst_node_id=ints,
    message_type=texts,
    reply_to_message_id=texts,
    group_id=texts,
    ttl_s=floats,
    created_at=floats,
)
messages = st.one_of(
    st.builds(lambda md, rd: Message(md, content=rd), metadatas, record_dicts),
    st.builds(lambda md, c, r: Message(md, error=Error(c, r)), metadatas, ints, texts),
)
user_configs = st.dictionaries(keys, st.one_of(st.booleans(), ints, floats, texts), max_size=4)
contexts = st.builds(
    Context,
    run_id=ints,
    node_id=ints,
    node_config=user_configs,
    run_config=user_configs,
    state=record_dicts,
)


def canon(obj: Any) -> Any:
    """A comparable form that keeps exact types (1, 1.0 and True differ) and NaN == NaN."""
    if isinstance(obj, (Message, Metadata, Error, Context)):
        return type(obj).__name__, [(f.name, canon(getattr(obj, f.name))) for f in fields(obj)]
    if isinstance(obj, Array):
        return "Array", obj.dtype.str, obj.shape, obj.numpy().tobytes()
    if isinstance(obj, Mapping):
        return type(obj).__name__, [(k, canon(v)) for k, v in obj.items()]
    if isinstance(obj, list):
        return "list", [canon(v) for v in obj]
    if isinstance(obj, float):
        return "float", "nan" if math.isnan(obj) else struct.pack("<d", obj)
    return type(obj).__name__, obj


def decodes_or_rejects(data: bytes) -> None:
    """Each decoder either decodes ``data`` or raises WireError; a decoded value round-trips."""
    for decoder, encoder in (
        (wire.decode, wire.encode),
        (wire.decode_context, wire.encode_context),
    ):
        try:
            value = decoder(data)
        except WireError:
            continue
        assert canon(decoder(encoder(value))) == canon(value)  # type: ignore[operator]


def sample_message() -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord(
                {
                    "w": np.arange(6, dtype=">f4").reshape(2, 3),
                    "b": np.array([True, False]),
                    "scalar": np.array(2.5),
                    "empty": np.zeros((0, 3), dtype="<i8"),
                }
            ),
            "metrics": MetricRecord({"loss": 0.5, "n": 3, "hist": [1, 2], "xs": [0.5]}),
            "config": ConfigRecord(
                {"lr": 0.1, "name": "héllo", "raw": b"\x00\xff", "on": True, "bs": [True]}
            ),
        }
    )
    return Message.create(content, dst_node_id=7, message_type="train.finetune")


def sample_context() -> Context:
    return Context(3, 9, {"partition-id": 1, "on": True}, {"lr": 0.01, "name": "x"}, RecordDict())


# --- round trips ---------------------------------------------------------------------------


@FAST
@given(messages)
def test_message_round_trip(message: Message) -> None:
    data = wire.encode(message)
    assert canon(wire.decode(data)) == canon(message)
    assert b"".join(wire.encode_parts(message)) == data


@FAST
@given(contexts)
def test_context_round_trip(context: Context) -> None:
    assert canon(wire.decode_context(wire.encode_context(context))) == canon(context)


def test_sample_round_trip_is_equal() -> None:
    message = sample_message()
    decoded = wire.decode(wire.encode(message))
    assert decoded == message
    assert decoded.content is not None
    assert decoded.content["arrays"]["w"].dtype.str == ">f4"
    assert decoded.content["arrays"]["empty"].shape == (0, 3)
    assert decoded.content["arrays"]["scalar"] == Array(np.array(2.5))


def test_zero_dimensional_and_empty_arrays_round_trip() -> None:
    arrays = {"s": np.array(2.5), "e": np.zeros((2, 0), dtype="<c8"), "z": np.zeros(0, "|b1")}
    message = Message.create(RecordDict({"a": ArrayRecord(arrays)}), 1, "train")
    data = wire.encode(message)
    assert b"<f8\x00" in data  # dtype then ndim 0, no dims
    decoded = wire.decode(data)
    assert decoded.content is not None
    assert [a.shape for a in decoded.content["a"].values()] == [(), (2, 0), (0,)]
    assert decoded.content["a"]["s"].numpy()[()] == 2.5


def test_error_reply_round_trip() -> None:
    reply = sample_message().reply_error(ErrorCode.TIMEOUT, "too slow")
    decoded = wire.decode(wire.encode(reply))
    assert decoded.error == Error(3, "too slow")
    assert decoded.has_error and decoded.content == RecordDict()
    assert decoded.metadata == reply.metadata


def test_nan_and_infinities_survive() -> None:
    content = RecordDict({"m": MetricRecord({"a": [math.nan, math.inf, -math.inf, -0.0]})})
    decoded = wire.decode(wire.encode(Message.create(content, 1, "evaluate")))
    assert decoded.content is not None
    a, b, c, d = decoded.content["m"]["a"]  # type: ignore[misc]
    assert math.isnan(a) and b == math.inf and c == -math.inf
    assert math.copysign(1.0, d) == -1.0


# --- zero copy, read-only, alignment -------------------------------------------------------


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_decode_does_not_copy_arrays(wrap: Any) -> None:
    weights = np.random.default_rng(0).random(100_000)
    message = Message.create(RecordDict({"a": ArrayRecord({"w": weights, "x": [1]})}), 1, "train")
    data = wrap(wire.encode(message))
    decoded = wire.decode(data)
    assert decoded.content is not None
    array = decoded.content["a"]["w"].numpy()
    raw = np.frombuffer(data, np.uint8)
    assert np.shares_memory(array, raw)
    assert not array.flags.writeable
    with pytest.raises(ValueError):
        array[0] = 1.0
    for arr in decoded.content["a"].to_numpy():
        start = arr.__array_interface__["data"][0] - raw.__array_interface__["data"][0]
        assert start % wire.ALIGNMENT == 0


def test_encode_parts_shares_array_memory() -> None:
    weights = np.arange(1000, dtype="<f8")
    message = Message.create(RecordDict({"a": ArrayRecord({"w": weights})}), 1, "train")
    parts = wire.encode_parts(message)
    assert any(np.shares_memory(np.frombuffer(p, np.uint8), weights) for p in parts)


# --- rejected input ------------------------------------------------------------------------


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, "the test pattern must occur exactly once"
    return data.replace(old, new)


def test_unknown_version_is_rejected() -> None:
    data = bytearray(wire.encode(sample_message()))
    data[3] = 9
    with pytest.raises(WireError, match=r"version 9.*reads version 1"):
        wire.decode(data)


def test_bad_magic_and_wrong_kind_are_rejected() -> None:
    with pytest.raises(WireError, match="magic"):
        wire.decode(b"XYZ" + wire.encode(sample_message())[3:])
    with pytest.raises(WireError, match="expected a context"):
        wire.decode_context(wire.encode(sample_message()))
    with pytest.raises(WireError, match="expected a message"):
        wire.decode(wire.encode_context(sample_context()))


def test_trailing_bytes_are_rejected() -> None:
    with pytest.raises(WireError, match="trailing"):
        wire.decode(wire.encode(sample_message()) + b"\x00")


def test_every_truncation_is_rejected() -> None:
    for encoded, decoder in (
        (wire.encode(sample_message()), wire.decode),
        (wire.encode_context(sample_context()), wire.decode_context),
    ):
        for end in range(len(encoded)):
            with pytest.raises(WireError):
                decoder(encoded[:end])  # type: ignore[operator]


def _array_message(array: np.ndarray[Any, Any]) -> bytes:
    return wire.encode(Message.create(RecordDict({"a": ArrayRecord({"w": array})}), 1, "train"))


def test_huge_declared_shape_is_rejected_without_allocating() -> None:
    data = _array_message(np.zeros(12345, dtype=np.uint8))
    huge = replace_once(data, struct.pack("<Q", 12345), struct.pack("<Q", 2**60))
    with pytest.raises(WireError, match="truncated"):
        wire.decode(huge)
    data = _array_message(np.zeros((0, 777, 999), dtype="<f4"))
    dims = struct.pack("<QQ", 777, 999)
    for big in (2**62, 2**64 - 1):
        with pytest.raises(WireError, match="too large"):
            wire.decode(replace_once(data, dims, struct.pack("<QQ", big, big)))


def test_too_many_dimensions_are_rejected() -> None:
    data = _array_message(np.zeros(3, dtype="<f4"))
    with pytest.raises(WireError, match="dimensions"):
        wire.decode(replace_once(data, b"<f4\x01", b"<f4\x21"))


@pytest.mark.parametrize("dtype", [b"|O8", b"<M8", b"|V8", b"|S8", b"<U2", b"f8 ", b"=f8", b"<b1"])
def test_non_numeric_or_non_canonical_dtypes_are_rejected(dtype: bytes) -> None:
    data = _array_message(np.zeros(2, dtype="<f8"))
    with pytest.raises(WireError, match="dtype"):
        wire.decode(replace_once(data, b"<f8", dtype))


def test_object_arrays_cannot_be_built() -> None:
    with pytest.raises(RecordError):
        Array(np.array([object()]))


def test_decoded_values_must_pass_record_checks() -> None:
    content = RecordDict({"cfg": ConfigRecord({"k": "text"})})
    data = wire.encode(Message.create(content, 1, "train"))
    as_metric = replace_once(data, struct.pack("<I", 3) + b"cfgC", struct.pack("<I", 3) + b"cfgM")
    with pytest.raises(WireError, match="MetricRecord"):
        wire.decode(as_metric)


def test_duplicate_keys_invalid_utf8_and_bad_bools_are_rejected() -> None:
    content = RecordDict({"c": ConfigRecord({"ka": True, "kb": 2})})
    message = Message.create(content, 1, "train").with_metadata(group_id="zzzz")
    data = wire.encode(message)
    with pytest.raises(WireError, match="duplicate"):
        wire.decode(replace_once(data, b"kb", b"ka"))
    with pytest.raises(WireError, match="UTF-8"):
        wire.decode(replace_once(data, b"zzzz", b"z\xffzz"))
    with pytest.raises(WireError, match="bool"):
        wire.decode(replace_once(data, b"ka\x03\x01", b"ka\x03\x02"))


def test_non_contiguous_buffer_is_rejected() -> None:
    data = np.frombuffer(wire.encode(sample_message()) * 2, np.uint8)[::2]
    with pytest.raises(WireError, match="contiguous"):
        wire.decode(memoryview(data))


# --- what cannot be encoded ----------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        ConfigRecord({"x": "\ud800"}),
        ConfigRecord({"x": ["ok", "\ud800"]}),
    ],
)
def test_unencodable_values_raise_wire_error_naming_the_key(record: Any) -> None:
    message = Message.create(RecordDict({"r": record}), 1, "train")
    with pytest.raises(WireError, match=r"\['x'\]"):
        wire.encode(message)


def test_unencodable_metadata_and_context_raise_wire_error() -> None:
    with pytest.raises(WireError, match="metadata"):
        wire.encode(sample_message().with_metadata(run_id=2**64))
    context = Context(1, 2, {"bad": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(WireError, match="node_config"):
        wire.encode_context(context)


def test_too_many_dimensions_cannot_be_encoded() -> None:
    array = np.zeros((1,) * (wire.MAX_NDIM + 1), dtype=np.uint8)
    with pytest.raises(WireError, match="dimensions"):
        wire.encode(Message.create(RecordDict({"a": ArrayRecord({"w": array})}), 1, "train"))


def test_list_mutated_to_mixed_types_cannot_be_encoded() -> None:
    record = ConfigRecord({"x": [1, 2]})
    record["x"].append("three")  # type: ignore[union-attr]
    with pytest.raises(WireError, match="single type"):
        wire.encode(Message.create(RecordDict({"r": record}), 1, "train"))


# --- fuzzing -------------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    decodes_or_rejects(data)


@FAST
@given(st.sampled_from([b"PLN\x01M", b"PLN\x01C"]), st.binary(max_size=300))
def test_random_bodies_decode_or_raise_wire_error(prefix: bytes, body: bytes) -> None:
    decodes_or_rejects(prefix + body)


mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete"]),
        st.integers(min_value=0),
        st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for op, where, chunk in edits:
        at = where % (len(out) + 1)
        if op == "flip" and at < len(out):
            out[at] ^= chunk[0] or 1
        elif op == "insert":
            out[at:at] = chunk
        else:
            del out[at : at + len(chunk)]
    return bytes(out)


@FAST
@given(mutations)
def test_mutated_sample_decodes_or_raises_wire_error(edits: list[tuple[str, int, bytes]]) -> None:
    decodes_or_rejects(mutate(wire.encode(sample_message()), edits))
    decodes_or_rejects(mutate(wire.encode_context(sample_context()), edits))


@FAST
@given(st.one_of(messages, contexts), mutations)
def test_mutated_random_encodings_decode_or_raise_wire_error(
    value: Message | Context, edits: list[tuple[str, int, bytes]]
) -> None:
    data = wire.encode(value) if isinstance(value, Message) else wire.encode_context(value)
    decodes_or_rejects(mutate(data, edits))


# --- the decoded size of lists -------------------------------------------------------------


def with_bools(count: int, lists: int = 1) -> bytes:
    """An encoded message whose ConfigRecord holds ``lists`` lists of ``count`` bools, built
    byte by byte (a record refuses such lists before they could be encoded)."""
    keys = [f"k{i}" for i in range(lists)]
    record = ConfigRecord({key: [True] for key in keys})
    data = wire.encode(Message.create(RecordDict({"c": record}), 1, "train"))
    one = b"\x0b" + struct.pack("<I", 1) + b"\x01"
    assert data.count(one) == lists
    return data.replace(one, b"\x0b" + struct.pack("<I", count) + b"\x01" * count)


def test_lists_decode_up_to_the_limit_in_all():
    from pollinate.records import MAX_LIST_ITEMS

    message = wire.decode(with_bools(MAX_LIST_ITEMS // 2, lists=2))
    assert len(message.content["c"]["k1"]) == MAX_LIST_ITEMS // 2


@pytest.mark.parametrize(("count", "lists"), [(1_048_577, 1), (600_000, 2), (2**32 - 1, 1)])
def test_lists_beyond_the_limit_are_refused_before_they_are_decoded(count, lists):
    data = with_bools(min(count, 1_100_000), lists)
    if count == 2**32 - 1:  # announced, not there: the count alone is refused
        data = data.replace(struct.pack("<I", 1_100_000), struct.pack("<I", count))
    with pytest.raises(WireError, match=r"more than the 1,048,576 list items a message may hold"):
        wire.decode(data)


def test_lists_beyond_the_limit_in_all_cannot_be_encoded():
    half = [0.5] * 600_000
    message = Message.create(RecordDict({"m": MetricRecord({"a": half, "b": half})}), 1, "train")
    with pytest.raises(WireError, match=r"MetricRecord\['b'\].*more than the 1,048,576 list items"):
        wire.encode(message)
