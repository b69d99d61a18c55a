"""Encoding: Message and Context to bytes, each array's data copied at most once."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..context import Context
from ..errors import WireError
from ..message import Message
from ..records import MAX_LIST_ITEMS, Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from . import _format as wf

_SCALAR_TAGS = ((bool, wf.BOOL), (int, wf.INT), (float, wf.FLOAT), (str, wf.STR), (bytes, wf.BYTES))
_RECORD_KINDS = ((ArrayRecord, wf.ARRAYS), (MetricRecord, wf.METRICS), (ConfigRecord, wf.CONFIGS))


class _Writer:
    """Collects header bytes and array buffers as separate parts, so arrays are not copied."""

    __slots__ = ("_buf", "_parts", "_size", "list_items")

    def __init__(self, kind: int) -> None:
        self._buf = bytearray(wf.PREFIX.pack(wf.MAGIC, wf.FORMAT_VERSION, kind))
        self._parts: list[bytes | memoryview] = []
        self._size = 0
        self.list_items = 0

    def pack(self, fmt: struct.Struct, *values: Any) -> None:
        self._buf += fmt.pack(*values)

    def raw(self, data: bytes) -> None:
        self._buf += data

    def blob(self, data: bytes) -> None:
        self._buf += wf.U32.pack(len(data))
        self._buf += data

    def text(self, value: str) -> None:
        if not isinstance(value, str):
            raise WireError(f"expected a str, got {type(value).__name__}")
        self.blob(value.encode("utf-8"))

    def buffer(self, data: memoryview) -> None:
        """Pad to the alignment, then add ``data`` as a part of its own."""
        self._buf += bytes(-(self._size + len(self._buf)) % wf.ALIGNMENT)
        if data.nbytes:
            self._flush()
            self._parts.append(data)
            self._size += data.nbytes

    def _flush(self) -> None:
        if self._buf:
            self._parts.append(bytes(self._buf))
            self._size += len(self._buf)
            self._buf = bytearray()

    def parts(self) -> list[bytes | memoryview]:
        self._flush()
        return self._parts


def encode_parts(message: Message) -> list[bytes | memoryview]:
    """Encode ``message`` as a list of header chunks and array buffers, not joined.

    A transport can send the parts one by one: the array parts are views, not copies.
    """
    w = _Writer(wf.MESSAGE)
    md = message.metadata
    with _encoding("metadata"):
        w.pack(wf.METADATA, md.run_id, md.src_node_id, md.dst_node_id, md.ttl_s, md.created_at)
        for text in (md.message_id, md.message_type, md.reply_to_message_id, md.group_id):
            w.text(text)
    if message.error is None:
        w.pack(wf.U8, wf.CONTENT)
        _put_record_dict(w, message.content)
    else:
        with _encoding("error"):
            w.pack(wf.U8, wf.ERROR)
            w.pack(wf.I64, message.error.code)
            w.text(message.error.reason)
    return w.parts()


def encode(message: Message) -> bytes:
    """Encode ``message`` as bytes (copying each array once); WireError if it cannot be."""
    return b"".join(encode_parts(message))


def encode_context(context: Context) -> bytes:
    """Encode ``context`` as bytes, to hand a node's context and state to a worker process."""
    w = _Writer(wf.CONTEXT)
    with _encoding("context ids"):
        w.pack(wf.CONTEXT_IDS, context.run_id, context.node_id)
    _put_user_config(w, "node_config", context.node_config)
    _put_user_config(w, "run_config", context.run_config)
    _put_record_dict(w, context.state)
    return b"".join(w.parts())


@contextmanager
def _encoding(what: str) -> Iterator[None]:
    """Turn a failure to encode ``what`` into a WireError that names it."""
    try:
        yield
    except (struct.error, UnicodeEncodeError, WireError) as err:
        raise WireError(f"cannot encode {what}: {err}") from None


def _put_record_dict(w: _Writer, records: RecordDict) -> None:
    w.pack(wf.U32, len(records))
    for key, record in records.items():
        with _encoding(f"RecordDict key {key!r}"):
            w.text(key)
        w.pack(wf.U8, next(kind for cls, kind in _RECORD_KINDS if isinstance(record, cls)))
        _put_items(w, record, _put_array if isinstance(record, ArrayRecord) else _put_value)


def _put_items(w: _Writer, record: Mapping[str, Any], put: Callable[[_Writer, Any], None]) -> None:
    w.pack(wf.U32, len(record))
    for key, value in record.items():
        with _encoding(f"{type(record).__name__}[{key!r}]"):
            w.text(key)
            put(w, value)


def _put_user_config(w: _Writer, name: str, config: Mapping[str, Any]) -> None:
    w.pack(wf.U32, len(config))
    for key, value in config.items():
        with _encoding(f"{name}[{key!r}]"):
            if not isinstance(value, (bool, int, float, str)):
                raise WireError("a config value must be a bool, int, float or str")
            w.text(key)
            _put_value(w, value)


def _tag_of(value: object) -> int:
    for cls, tag in _SCALAR_TAGS:
        if isinstance(value, cls):
            return tag
    raise WireError(f"a value of type {type(value).__name__} has no wire encoding")


def _put_value(w: _Writer, value: Any) -> None:
    if isinstance(value, list):
        _put_list(w, value)
        return
    tag = _tag_of(value)
    w.pack(wf.U8, tag)
    if tag == wf.INT:
        w.pack(wf.I64, value)
    elif tag == wf.FLOAT:
        w.pack(wf.F64, value)
    elif tag == wf.BOOL:
        w.pack(wf.U8, value)
    else:
        w.blob(value.encode("utf-8") if tag == wf.STR else value)


def _put_list(w: _Writer, values: list[Any]) -> None:
    if len(set(map(type, values))) > 1:
        raise WireError("a list must hold values of a single type")
    w.list_items += len(values)
    if w.list_items > MAX_LIST_ITEMS:
        raise WireError(
            f"its lists and those before it hold {w.list_items:,} items, more than the "
            f"{MAX_LIST_ITEMS:,} list items a message may hold: send data this size as an "
            "ArrayRecord"
        )
    tag = _tag_of(values[0]) if values else wf.INT
    w.pack(wf.U8, wf.LIST + tag)
    w.pack(wf.U32, len(values))
    if tag in (wf.INT, wf.FLOAT):
        w.raw(struct.pack(f"<{len(values)}{'q' if tag == wf.INT else 'd'}", *values))
    elif tag == wf.BOOL:
        w.raw(bytes(values))
    else:
        for item in values:
            w.blob(item.encode("utf-8") if tag == wf.STR else item)


def _put_array(w: _Writer, array: Array) -> None:
    data = array.numpy()
    if data.ndim > wf.MAX_NDIM:
        raise WireError(f"an array has {data.ndim} dimensions, at most {wf.MAX_NDIM} travel")
    dtype = data.dtype.str.encode("ascii")
    w.pack(wf.U8, len(dtype))
    w.raw(dtype)
    w.pack(struct.Struct(f"<B{data.ndim}Q"), data.ndim, *data.shape)
    w.buffer(data.reshape(-1).view(np.uint8).data)
