import contextlib
import json
import re
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pollinate import ArrayRecord, Message, RecordDict
from pollinate.deploy._frames import (
    Assembler,
    Frame,
    assemble_one,
    chunk_frames,
    decode_frame,
    encode_frame,
)
from pollinate.errors import WireError
from pollinate.wire import decode, encode_parts


def test_a_frame_round_trips():
    frame = decode_frame(encode_frame(Frame("chunk", {"message_id": "m", "offset": 3}, b"xyz")))
    assert frame.kind == "chunk" and frame.header == {"message_id": "m", "offset": 3}
    assert bytes(frame.payload) == b"xyz"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PL", "shorter than its prefix"),
        (b"XYZ\x01\x00\x00\x00\x00", "not a pollinate frame"),
        (b"PLF\x09\x02\x00\x00\x00{}", "version 9"),
        (b"PLF\x01\xff\x00\x00\x00{}", "does not fit"),
        (b"PLF\x01\x02\x00\x00\x00{x", "not JSON"),
        (b"PLF\x01\x02\x00\x00\x00[]", "JSON object"),
    ],
)
def test_malformed_frames_are_refused_with_a_reason(data, message):
    with pytest.raises(WireError, match=message):
        decode_frame(data)


@given(
    sizes=st.lists(st.integers(0, 50), max_size=6),
    chunk_size=st.integers(1, 64),
)
def test_chunks_reassemble_to_the_parts_in_order(sizes, chunk_size):
    parts = [bytes([i % 256]) * size for i, size in enumerate(sizes)]
    frames = list(chunk_frames("m", parts, chunk_size, {"extra": 1}))
    assert all(len(f.payload) <= chunk_size for f in frames)
    assert frames[0].header["total"] == sum(sizes) and frames[0].header["extra"] == 1
    assembler = Assembler(max_message_size=10_000)
    results = [assembler.add(decode_frame(encode_frame(f))) for f in frames]
    assert all(r is None for r in results[:-1])
    header, buffer = results[-1]
    assert bytes(buffer) == b"".join(parts) and header["extra"] == 1
    assert assembler.pending_bytes() == 0


def test_a_model_goes_through_in_small_chunks_without_changing_a_bit():
    arrays = ArrayRecord({"w": np.random.default_rng(0).normal(size=(300, 70)), "b": np.arange(9)})
    message = Message.create(RecordDict({"arrays": arrays}), 7, "train")
    frames = list(chunk_frames(message.metadata.message_id, encode_parts(message), 4096))
    assert len(frames) > 40
    assembler = Assembler(max_message_size=1 << 20)
    for frame in frames:
        done = assembler.add(decode_frame(encode_frame(frame)))
    decoded = decode(done[1])
    assert decoded.content.arrays() == arrays


def test_oversized_out_of_order_and_unknown_chunks_are_refused():
    assembler = Assembler(max_message_size=100)
    with pytest.raises(WireError, match="exceeds the limit of 100"):
        assembler.add(Frame("chunk", {"message_id": "big", "offset": 0, "total": 101}, b""))
    assert assembler.pending_bytes() == 0  # nothing was set aside for it
    assembler.add(Frame("chunk", {"message_id": "m", "offset": 0, "total": 10}, b"abc"))
    with pytest.raises(WireError, match="does not follow byte 3"):
        assembler.add(Frame("chunk", {"message_id": "m", "offset": 5}, b"xy"))
    with pytest.raises(WireError, match="unknown message"):
        assembler.add(Frame("chunk", {"message_id": "m", "offset": 3}, b"xy"))
    with pytest.raises(WireError, match="message_id"):
        assembler.add(Frame("chunk", {"offset": 0}, b""))


def test_hostile_headers_and_interleaved_messages_are_refused():
    deep = b"[" * 30_000 + b"]" * 30_000  # fits the header limit, too deep for json
    data = b"PLF\x01" + len(deep).to_bytes(4, "little") + deep
    with pytest.raises(WireError, match="not JSON"):
        decode_frame(data)  # a RecursionError inside json, not a crash
    assembler = Assembler(max_message_size=100, max_open=1)
    assembler.add(Frame("chunk", {"message_id": "a", "offset": 0, "total": 10}, b"abc"))
    with pytest.raises(WireError, match="others are unfinished"):
        assembler.add(Frame("chunk", {"message_id": "b", "offset": 0, "total": 10}, b"abc"))


def raw_frame(header: bytes, payload: bytes = b"") -> bytes:
    """A frame with ``header`` as its JSON text, byte for byte (json.dumps cannot write some)."""
    return b"PLF\x01" + len(header).to_bytes(4, "little") + header + payload


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            b'{"kind":"chunk","message_id":"m","offset":0,"total":' + b"7" * 5000 + b"}",
            "an integer of 5000 digits",
        ),
        (
            b'{"kind":"hello","node_id":' + str(2**70).encode() + b',"token":"t"}',
            "does not fit in 64 bits",
        ),
        (
            b'{"kind":"chunk","message_id":"m","offset":0,"total":true}',
            "'total' must be an int >= 0, got true",
        ),
        (b'{"kind":"chunk","message_id":"m","offset":false}', "'offset' must be an int >= 0"),
        (b'{"kind":"chunk","message_id":"m","offset":-1}', "'offset' must be an int >= 0"),
        (
            b'{"kind":"signed","public_key":"00","timestamp_ms":1e999,"nonce":"00","signature":"00"}',
            "1e999 is not a finite number",
        ),
        (
            b'{"kind":"registered","node_id":1,"token":"t","heartbeat_s":NaN}',
            "holds NaN, which is not JSON",
        ),
        (
            b'{"kind":"registered","node_id":1,"token":"t","heartbeat_s":-Infinity}',
            "holds -Infinity, which is not JSON",
        ),
        (b'{"kind":"hello","node_id":[1],"token":"t"}', "'node_id' must be an int, got [1]"),
        (b'{"kind":"hello","node_id":1}', "a 'hello' frame needs 'token'"),
        (
            b'{"kind":"registered","node_id":1,"token":"t","heartbeat_s":0}',
            "'heartbeat_s' must be a number > 0",
        ),
        (b'{"kind":"get_app","node_id":1,"token":"t","digest":{"a":1}}', "'digest' must be a str"),
        (b'{"kind":"logs","run":"1","follow":1}', "'follow' must be a bool"),
        (
            b'{"kind":"chunk","message_id":"m","offset":0,"total":1,"run_config":[]}',
            "'run_config' must be an object",
        ),
    ],
)
def test_hostile_header_fields_are_refused_naming_the_field(header, message):
    with pytest.raises(WireError, match=re.escape(message)):
        decode_frame(raw_frame(header))


def test_absent_optional_and_null_nullable_fields_are_fine():
    frame = decode_frame(
        encode_frame(Frame("run", {"run_id": 3, "name": "x", "started_at": None, "error": None}))
    )
    assert frame.header == {"run_id": 3, "name": "x", "started_at": None, "error": None}
    assert decode_frame(encode_frame(Frame("chunk", {"message_id": "m", "offset": 0}))).header


# --- fuzzing frames ------------------------------------------------------------------------

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIELDS = [
    "message_id",
    "offset",
    "total",
    "node_id",
    "token",
    "timestamp_ms",
    "heartbeat_s",
    "chunk_size",
    "reply_to",
    "digest",
    "run_config",
    "follow",
    "kind",
    "other",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
headers = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6).map(
    lambda h: {"kind": "chunk", **h}
)


def frame_or_wire_error(data: bytes) -> None:
    """Decoding ``data`` gives a frame whose chunk an Assembler takes, or a WireError: never
    another exception."""
    try:
        frame = decode_frame(data)
    except WireError:
        return
    if frame.kind == "chunk":
        with contextlib.suppress(WireError):
            Assembler(1 << 10, max_open=1).add(frame)


def header_text(header: dict) -> bytes:
    """``header`` as JSON, Python's way: NaN, Infinity and long ints included."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return json.dumps(header).encode()
    finally:
        sys.set_int_max_str_digits(limit)


@FAST
@given(headers, st.binary(max_size=16))
def test_random_headers_decode_or_raise_wire_error(header, payload):
    frame_or_wire_error(raw_frame(header_text(header), payload))


@FAST
@given(headers, st.lists(st.tuples(st.integers(0), st.binary(min_size=1, max_size=4)), max_size=3))
def test_mutated_headers_decode_or_raise_wire_error(header, edits):
    data = bytearray(raw_frame(header_text(header)))
    for where, chunk in edits:
        at = where % len(data)
        data[at : at + len(chunk)] = chunk
    frame_or_wire_error(bytes(data))


@FAST
@given(st.binary(max_size=64))
def test_random_bytes_decode_as_frames_or_raise_wire_error(data):
    frame_or_wire_error(data)
    frame_or_wire_error(b"PLF\x01" + data)


def test_a_chunk_stream_with_hostile_fields_ends_in_one_wire_error():
    stream = [raw_frame(b'{"kind":"chunk","message_id":"m","offset":0,"total":true}')]
    with pytest.raises(WireError, match="'total' must be an int >= 0"):
        assemble_one(stream, 100, "the test")
