import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pollinate import ArrayRecord, Message, RecordDict
from pollinate.deploy._frames import Assembler, Frame, chunk_frames, decode_frame, encode_frame
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
