"""The pipe between the link and a ServerApp's process: frames, arrays shared, errors by name.

A frame is a JSON header, then a payload of raw parts sent from their buffers as they are.
Messages cross as the wire format's parts with every distinct Array once (``slim``), so a
broadcast model crosses once however many messages share it; the other end decodes views
(``unslim``). No pickle: the child runs code a run brought.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
from collections.abc import Iterable, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from .. import errors, wire
from ..errors import PollinateError
from ..message import Message, Metadata
from ..records import Array, ArrayRecord, RecordDict

MAX_HEADER_SIZE = 256 << 20
"""256 MiB: a frame's JSON header (layouts, round records); larger ones are refused unread."""
MAX_FRAME_SIZE = 16 << 30
"""16 GiB, the link's largest message: a frame's payload (the arrays) may not claim more."""

__all__ = [
    "ERRORS",
    "EVENTS",
    "MAX_FRAME_SIZE",
    "MAX_HEADER_SIZE",
    "Channel",
    "Parts",
    "ProtocolError",
    "error_fields",
    "error_from",
    "hold",
    "slim",
    "unhold",
    "unslim",
]

Parts = list[bytes | memoryview]


class ProtocolError(Exception):
    """A frame from the child that does not follow the protocol."""


class Channel:
    """Frames over one end of a pipe: a JSON header, then a payload of raw parts."""

    def __init__(self, conn: Connection, max_size: int = MAX_FRAME_SIZE) -> None:
        self.conn = conn
        self.max_size = max_size
        self._sending = threading.Lock()

    def send(self, header: Mapping[str, Any], parts: Sequence[bytes | memoryview] = ()) -> None:
        """Send one frame; each part goes straight from its buffer (thread-safe)."""
        views = [memoryview(p) for p in parts]
        size = sum(v.nbytes for v in views)
        with self._sending:
            self.conn.send_bytes(json.dumps({**header, "size": size}).encode())
            for view in views:
                if view.nbytes:
                    self.conn.send_bytes(view)

    def receive(self) -> tuple[dict[str, Any], memoryview]:
        """The next frame: its header and its payload in one buffer (EOFError if closed)."""
        try:
            header = json.loads(self.conn.recv_bytes(MAX_HEADER_SIZE), parse_constant=_no_constant)
            size = header["size"]
        except OSError as err:  # over MAX_HEADER_SIZE (the pipe is then unusable)
            raise ProtocolError(f"a frame header is not valid: {err}") from None
        except (ValueError, KeyError, TypeError) as err:
            raise ProtocolError(f"a frame header is not valid: {err}") from None
        if not isinstance(header, dict) or type(size) is not int or not 0 <= size <= self.max_size:
            raise ProtocolError(f"a frame header is not valid (size {size!r})")
        try:  # pages are taken as the bytes arrive, not for what the header claims
            buffer = np.empty(size, dtype=np.uint8)
        except MemoryError:
            raise ProtocolError(f"a frame of {size:,} bytes does not fit in memory") from None
        received = 0
        try:
            while received < size:
                received += self.conn.recv_bytes_into(buffer, received)
        except mp.BufferTooShort:
            raise ProtocolError("a frame is longer than its header says") from None
        return header, buffer.data


def hold(records: Mapping[str, ArrayRecord]) -> Parts:
    """Array records as the parts of one wire-format message (the arrays are not copied)."""
    return wire.encode_parts(Message(Metadata(0, "", 0, 0, "arrays"), RecordDict(records)))


def unhold(payload: memoryview) -> RecordDict:
    """The records ``hold`` encoded, as views of ``payload``."""
    return wire.decode(payload).content


def slim(messages: Iterable[Message]) -> tuple[Parts, list[dict[str, Any]]]:
    """Messages as frame parts: every distinct Array once, then each message without arrays.

    A strategy sends the same global model to every node: it crosses the pipe once, and
    the link's messages share it again.
    """
    pool: dict[int, tuple[str, Array]] = {}
    slims: list[tuple[Message, dict[str, Any]]] = []
    for message in messages:
        kept, arrays = RecordDict(), dict[str, list[list[str]]]()
        for key, record in message.content.items():
            if isinstance(record, ArrayRecord):
                arrays[key] = [
                    [name, pool.setdefault(id(array), (str(len(pool)), array))[0]]
                    for name, array in record.items()
                ]
            else:
                kept[key] = record
        layout: dict[str, Any] = {"order": list(message.content), "arrays": arrays}
        slims.append((Message(message.metadata, kept, message.error), layout))
    parts = hold({"pool": ArrayRecord(dict(pool.values()))})
    layouts = [{"size": _size(parts)}]
    for slim, layout in slims:
        encoded = wire.encode_parts(slim)
        parts += encoded
        layouts.append({**layout, "size": _size(encoded)})
    return parts, layouts


def unslim(layouts: Any, payload: memoryview) -> list[Message]:
    """The messages ``slim`` sent, their arrays shared views of ``payload``."""
    if not isinstance(layouts, list) or not layouts:
        raise ProtocolError("a send without its messages' layout")
    sizes = [layout["size"] for layout in layouts]
    if not all(isinstance(s, int) and s >= 0 for s in sizes) or sum(sizes) != payload.nbytes:
        raise ProtocolError("the messages' sizes do not add up to the frame's")
    offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    pool = unhold(payload[: offsets[1]]).arrays("pool")
    messages = []
    for i, layout in enumerate(layouts[1:], start=1):
        slim = wire.decode(payload[offsets[i] : offsets[i + 1]])
        arrays = layout["arrays"]
        content = RecordDict(
            (
                key,
                ArrayRecord((name, pool[index]) for name, index in arrays[key])
                if key in arrays
                else slim.content[key],
            )
            for key in layout["order"]
        )
        messages.append(Message(slim.metadata, content, slim.error))
    return messages


def _size(parts: Parts) -> int:
    return sum(memoryview(p).nbytes for p in parts)


EVENTS = ("resume", "round_start", "round", "arrays", "strategy_state")
"""The observer events that may cross from the ServerApp's process to the link."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a frame may carry")


ERRORS: dict[str, type[PollinateError]] = {
    name: cls
    for name in errors.__all__
    if isinstance(cls := getattr(errors, name), type) and issubclass(cls, PollinateError)
}
"""pollinate's errors by name: an error crosses the pipe as its name and message."""


def error_fields(err: PollinateError) -> dict[str, Any]:
    """``err`` as header fields: its name and message (and an OS error's number and file)."""
    fields: dict[str, Any] = {"error": type(err).__name__, "message": str(err)}
    if isinstance(err, OSError):
        fields |= {"errno": err.errno, "strerror": err.strerror, "filename": err.filename}
    return fields


def error_from(fields: Mapping[str, Any], default: type[PollinateError]) -> PollinateError:
    """The error ``error_fields`` described (``default`` if its name is not pollinate's)."""
    kind = ERRORS.get(str(fields.get("error")), default)
    if issubclass(kind, OSError) and isinstance(fields.get("errno"), int):
        return kind(fields["errno"], str(fields.get("strerror")), str(fields.get("filename")))
    return kind(str(fields.get("message", "")))
