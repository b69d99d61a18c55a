"""Frames: what travels on the gRPC channel between the link and a node.

gRPC carries raw bytes here (no protobuf): each gRPC message is one frame, a small JSON
header plus a payload::

    b"PLF" version:u8  header_length:u32  header:JSON (UTF-8)  payload:bytes

A pollinate Message (already in the versioned wire format) is cut into ``chunk`` frames of
at most ``chunk_size`` payload bytes, so a model of any size goes through in pieces that
stay far below gRPC's per-message limit; the receiver writes each chunk straight into one
buffer of the announced size, and decodes the Message from it without another copy.

The sender may be hostile: ``decode_frame`` checks every header field pollinate reads (its
type, its range, finite numbers, ints within 64 bits) and raises WireError, never anything
else, so each caller has one error to turn into ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import WireError

__all__ = [
    "Assembler",
    "DEFAULT_CHUNK_SIZE",
    "Frame",
    "MAX_CHUNK_SIZE",
    "MAX_HEADER_SIZE",
    "assemble_one",
    "chunk_frames",
    "decode_frame",
    "encode_frame",
    "frame_limit",
]

MAGIC = b"PLF"
VERSION = 1
_PREFIX = struct.Struct("<3sBI")
DEFAULT_CHUNK_SIZE = 1 << 20
"""1 MiB: large enough that per-chunk costs vanish, small enough for any gRPC limit."""
MAX_CHUNK_SIZE = 64 << 20
"""The largest chunk either side may choose: every node accepts chunks up to this size."""
MAX_HEADER_SIZE = 1 << 16
"""Headers are small (ids, sizes, configs); a larger one is malformed or hostile."""


def frame_limit(chunk_size: int) -> int:
    """The largest gRPC message a chunk of ``chunk_size`` makes, signed (two headers) or not."""
    return chunk_size + 2 * (MAX_HEADER_SIZE + 512)


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame's ``kind`` (``"chunk"``, ``"hello"``, ...), its header fields and payload."""

    kind: str
    header: dict[str, Any] = field(default_factory=dict)
    payload: bytes | memoryview = b""


def encode_frame(frame: Frame) -> bytes:
    """The frame as one gRPC message."""
    header = json.dumps({"kind": frame.kind, **frame.header}, separators=(",", ":")).encode()
    if len(header) > MAX_HEADER_SIZE:
        raise WireError(f"frame header of {len(header)} bytes exceeds {MAX_HEADER_SIZE}")
    return b"".join((_PREFIX.pack(MAGIC, VERSION, len(header)), header, frame.payload))


def decode_frame(data: bytes) -> Frame:
    """The frame in ``data``; a WireError if it is not one (the sender may be hostile)."""
    if len(data) < _PREFIX.size:
        raise WireError(f"frame of {len(data)} bytes is shorter than its prefix")
    magic, version, header_length = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise WireError(f"not a pollinate frame (starts with {bytes(magic)!r})")
    if version != VERSION:
        raise WireError(f"frame version {version} is not supported (this side speaks {VERSION})")
    end = _PREFIX.size + header_length
    if header_length > MAX_HEADER_SIZE or end > len(data):
        raise WireError(f"frame header length {header_length} does not fit the frame")
    header = _parse_header(bytes(data[_PREFIX.size : end]))
    kind = header.pop("kind")
    return Frame(kind, header, memoryview(data)[end:])


def _parse_header(text: bytes) -> dict[str, Any]:
    """The header's JSON object, every field it names checked (see ``_FIELDS``)."""
    try:
        header = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_no_constant
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise WireError(f"frame header is not JSON: {type(err).__name__}") from None
    if not isinstance(header, dict) or not isinstance(header.get("kind"), str):
        raise WireError("frame header must be a JSON object with a string 'kind'")
    for name in _REQUIRED.get(header["kind"], ()):
        if name not in header:
            raise WireError(f"a {header['kind']!r} frame needs {name!r} in its header")
    for name, value in header.items():
        rule = _FIELDS.get(name)
        if rule is not None and not rule.accepts(value):
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise WireError(f"frame header field {name!r} must be {rule.what}, got {shown}")
    return header


_INT64_DIGITS = len(str(2**63))


def _parse_int(text: str) -> int:
    """A JSON integer that fits in 64 bits (a 5,000-digit one must not reach int())."""
    digits = len(text.lstrip("-"))
    if digits > _INT64_DIGITS:
        raise WireError(
            f"frame header holds an integer of {digits} digits, which does not fit in 64 bits"
        )
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise WireError(f"frame header integer {text} does not fit in 64 bits")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise WireError(f"frame header number {text[:40]} is not a finite number")
    return value


def _no_constant(name: str) -> Any:
    raise WireError(f"frame header holds {name}, which is not JSON")


@dataclass(frozen=True, slots=True)
class _Field:
    """What a header field must hold: ``what`` in words, ``accepts`` as a test."""

    what: str
    accepts: Callable[[Any], bool]

    def or_null(self) -> _Field:
        return _Field(f"{self.what} or null", lambda v: v is None or self.accepts(v))


def _is_int(value: Any) -> bool:  # bool is an int in Python, never in a header
    return type(value) is int


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


_INT = _Field("an int", _is_int)
_COUNT = _Field("an int >= 0", lambda v: _is_int(v) and v >= 0)
_POSITIVE_INT = _Field("an int >= 1", lambda v: _is_int(v) and v >= 1)
_NUMBER = _Field("a number", _is_number)
_POSITIVE = _Field("a number > 0", lambda v: _is_number(v) and v > 0)
_TEXT = _Field("a str", lambda v: type(v) is str)
_BOOL = _Field("a bool", lambda v: type(v) is bool)
_OBJECT = _Field("an object", lambda v: type(v) is dict)

_FIELDS: dict[str, _Field] = {
    "kind": _TEXT,
    # chunks
    "message_id": _TEXT,
    "offset": _COUNT,
    "total": _COUNT,
    "reply_to": _TEXT,
    # registration, hello, app requests, signatures
    "node_id": _INT,
    "token": _TEXT,
    "heartbeat_s": _POSITIVE,
    "chunk_size": _POSITIVE_INT,
    "node_config": _OBJECT,
    "digest": _TEXT,
    "public_key": _TEXT,
    "timestamp_ms": _INT,
    "nonce": _TEXT,
    "signature": _TEXT,
    # runs: submissions, their summaries, control requests
    "app": _OBJECT,
    "name": _TEXT.or_null(),
    "run_config": _OBJECT,
    "min_nodes": _COUNT,
    "wait_s": _NUMBER,
    "run": _Field("a str or an int", lambda v: type(v) is str or _is_int(v)),
    "follow": _BOOL,
    "run_id": _INT,
    "status": _TEXT,
    "rounds_done": _COUNT,
    "submitted_at": _NUMBER,
    "started_at": _NUMBER.or_null(),
    "ended_at": _NUMBER.or_null(),
    "error": _TEXT.or_null(),
    "out_dir": _TEXT.or_null(),
}
"""Every header field pollinate reads, and what it must hold: checked once, at decoding, so
no reader meets a bool for an int, a list for an id or an infinite timestamp. Other fields
pass through unchecked (a newer peer may send more)."""

_REQUIRED: dict[str, tuple[str, ...]] = {
    "chunk": ("message_id", "offset"),
    "hello": ("node_id", "token"),
    "registered": ("node_id", "token", "heartbeat_s"),
    "get_app": ("node_id", "token", "digest"),
    "signed": ("public_key", "timestamp_ms", "nonce", "signature"),
}
"""The fields a frame of each kind cannot do without."""


def chunk_frames(
    message_id: str,
    parts: Sequence[bytes | memoryview],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    header: dict[str, Any] | None = None,
) -> Iterator[Frame]:
    """``chunk`` frames carrying the concatenation of ``parts``, ``chunk_size`` bytes each.

    The first chunk's header says the total size (and carries ``header``'s fields), so the
    receiver allocates once. Parts are sliced, not joined: the model's arrays are not copied
    before gRPC takes each chunk.
    """
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}, got {chunk_size}")
    views = [memoryview(p).cast("B") for p in parts]
    total = sum(len(v) for v in views)
    first = {"message_id": message_id, "total": total, **(header or {})}
    offset, pending, pending_size = 0, [], 0
    for view in views:
        while len(view):
            take = min(len(view), chunk_size - pending_size)
            pending.append(view[:take])
            pending_size += take
            view = view[take:]
            if pending_size == chunk_size:
                yield _chunk(first if offset == 0 else {"message_id": message_id}, offset, pending)
                offset += pending_size
                pending, pending_size = [], 0
    if pending or offset == 0:
        yield _chunk(first if offset == 0 else {"message_id": message_id}, offset, pending)


def _chunk(header: dict[str, Any], offset: int, pieces: list[memoryview]) -> Frame:
    payload = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    return Frame("chunk", {**header, "offset": offset}, payload)


@dataclass(slots=True)
class _Partial:
    """A message coming in: its first chunk's header, its buffer and how much is filled."""

    header: dict[str, Any]
    buffer: memoryview | None
    """None for a refused message: its chunks are checked and dropped, nothing is kept."""
    total: int
    filled: int = 0


class Assembler:
    """Rebuilds messages from ``chunk`` frames, refusing anything inconsistent or too large.

    Each message's bytes go into one preallocated buffer; ``add`` returns the first chunk's
    header and the complete buffer (a memoryview) when the last chunk arrives, else None.
    """

    def __init__(self, max_message_size: int, max_open: int | None = None) -> None:
        self.max_message_size = max_message_size
        self.max_open = max_open
        """How many messages may be half-received at once (None: no limit)."""
        self._partials: dict[str, _Partial] = {}

    def add(self, frame: Frame, keep: bool = True) -> tuple[dict[str, Any], memoryview] | None:
        """Take one chunk; the whole message once its last byte is in.

        ``keep=False`` on a message's first chunk refuses the message without allocating
        its buffer: its chunks are still checked, in order, and dropped.
        """
        message_id = frame.header.get("message_id")
        offset = frame.header.get("offset")
        if not isinstance(message_id, str) or not isinstance(offset, int):
            raise WireError("chunk frame needs a string 'message_id' and an int 'offset'")
        if offset == 0:
            self._start(message_id, frame.header, keep)
        partial = self._partials.get(message_id)
        if partial is None:
            raise WireError(f"chunk at offset {offset} of unknown message {message_id!r}")
        end = offset + len(frame.payload)
        if offset != partial.filled or end > partial.total:
            del self._partials[message_id]
            raise WireError(
                f"chunk of message {message_id!r} at offset {offset} does not follow byte "
                f"{partial.filled} of {partial.total}"
            )
        if partial.buffer is not None:
            partial.buffer[offset:end] = frame.payload
        partial.filled = end
        if end < partial.total:
            return None
        del self._partials[message_id]
        return None if partial.buffer is None else (partial.header, partial.buffer)

    def _start(self, message_id: str, header: dict[str, Any], keep: bool) -> None:
        """Check a message's first chunk and set its buffer aside (none if not ``keep``)."""
        if message_id in self._partials:
            raise WireError(f"message {message_id!r} started twice")
        total = header.get("total")
        if not isinstance(total, int) or total < 0:
            raise WireError("the first chunk of a message needs an int 'total' >= 0")
        if self.max_open is not None and len(self._partials) >= self.max_open:
            raise WireError(
                f"message {message_id!r} starts while {len(self._partials)} others are "
                "unfinished: chunks of one message must come before the next"
            )
        if total > self.max_message_size:
            raise WireError(
                f"message {message_id!r} of {total:,} bytes exceeds the limit of "
                f"{self.max_message_size:,} bytes"
            )
        buffer = allocate(total) if keep else None
        self._partials[message_id] = _Partial(header, buffer, total)

    def pending_bytes(self) -> int:
        """Bytes held for messages not yet complete."""
        return sum(p.total for p in self._partials.values() if p.buffer is not None)


def allocate(total: int) -> memoryview:
    """A writable buffer of ``total`` bytes for a message coming in; a WireError if no memory.

    numpy's allocator gets huge pages for large buffers: writing 100 MB into one is several
    times faster than into a fresh bytearray, which faults page by page.
    """
    try:
        return np.empty(total, dtype=np.uint8).data
    except MemoryError:
        raise WireError(f"no memory for a message of {total:,} bytes") from None


def assemble_one(
    frames: Iterable[bytes], max_size: int, what: str
) -> tuple[dict[str, Any], memoryview]:
    """One chunked message from a stream of encoded frames: its first header and its bytes.

    Anything but ``chunk`` frames, or a stream that ends early, is a WireError naming
    ``what`` ("the submission", "the app bundle").
    """
    assembler = Assembler(max_size, max_open=1)
    for data in frames:
        frame = decode_frame(data)
        if frame.kind != "chunk":
            raise WireError(f"{what}: expected chunk frames, got {frame.kind!r}")
        done = assembler.add(frame)
        if done is not None:
            return done
    raise WireError(f"{what} ended before its last chunk")
