"""Decoding: bytes to Message or Context, arrays as views of the input, never copies.

Every length and count is checked against the bytes left before it is used, so hostile
input fails with WireError instead of allocating, crashing or looping.
"""

from __future__ import annotations

import contextlib
import re
import struct
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np

from ..context import Context
from ..errors import RecordError, WireError
from ..message import Error, Message, Metadata
from ..records import (
    MAX_LIST_ITEMS,
    Array,
    ArrayRecord,
    ConfigRecord,
    MetricRecord,
    Record,
    RecordDict,
)
from . import _format as wf

T = TypeVar("T")
_DTYPE = re.compile(r"[<>|][biufc][0-9]{1,2}")
_VALID_DTYPES: dict[str, np.dtype[Any]] = {}
_KIND_NAMES = {wf.MESSAGE: "a message", wf.CONTEXT: "a context"}


class _Reader:
    """Reads the input buffer front to back, checking every length before using it."""

    __slots__ = ("end", "list_items", "pos", "view")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        if not view.c_contiguous:
            raise WireError("the input buffer must be C-contiguous")
        self.view = view if view.ndim == 1 and view.format == "B" else view.cast("B")
        self.pos = 0
        self.end = len(self.view)
        self.list_items = 0

    def take(self, n: int) -> int:
        """Skip ``n`` bytes and return where they start."""
        start = self.pos
        if n > self.end - start:
            raise WireError(
                f"truncated: {n} bytes needed at offset {start}, {self.end - start} left"
            )
        self.pos = start + n
        return start

    def unpack(self, fmt: struct.Struct) -> tuple[Any, ...]:
        return fmt.unpack_from(self.view, self.take(fmt.size))

    def u8(self) -> int:
        return int(self.unpack(wf.U8)[0])

    def count(self, item_size: int = 1) -> int:
        """Read a u32 count of items that each take at least ``item_size`` bytes."""
        n = int(self.unpack(wf.U32)[0])
        if n * item_size > self.end - self.pos:
            raise WireError(f"truncated: a count of {n} before offset {self.pos} is too large")
        return n

    def list_count(self, item_size: int) -> int:
        """Read a list's item count, refused if the encoding's lists would hold too many."""
        n = int(self.unpack(wf.U32)[0])
        self.list_items += n
        if self.list_items > MAX_LIST_ITEMS:
            raise WireError(
                f"a list of {n:,} items before offset {self.pos} makes more than the "
                f"{MAX_LIST_ITEMS:,} list items a message may hold"
            )
        self.pos -= wf.U32.size
        return self.count(item_size)

    def blob(self) -> memoryview:
        n = self.count()
        start = self.take(n)
        return self.view[start : start + n]

    def text(self) -> str:
        try:
            return str(self.blob(), "utf-8")
        except UnicodeDecodeError as err:
            raise WireError(f"invalid UTF-8 in a string before offset {self.pos}: {err}") from None

    def padding(self) -> None:
        n = -self.pos % wf.ALIGNMENT
        start = self.take(n)
        if any(self.view[start : start + n]):
            raise WireError(f"nonzero padding at offset {start}")


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Decode a Message from ``data``; arrays are read-only views of ``data``, not copies.

    Raises WireError for anything that is not a complete, valid encoding.
    """
    return _decode(data, wf.MESSAGE, _get_message)


def decode_context(data: bytes | bytearray | memoryview) -> Context:
    """Decode a Context encoded by ``encode_context``; WireError if ``data`` is not one."""
    return _decode(data, wf.CONTEXT, _get_context)


def _decode(data: bytes | bytearray | memoryview, kind: int, body: Callable[[_Reader], T]) -> T:
    try:
        r = _Reader(data)
        _check_prefix(r, kind)
        result = body(r)
        if r.pos != r.end:
            raise WireError(f"{r.end - r.pos} trailing bytes after a complete encoding")
        return result
    except WireError:
        raise
    except (RecordError, ValueError, OverflowError, struct.error) as err:
        raise WireError(f"invalid encoding: {err}") from None  # a safety net: none expected


def _check_prefix(r: _Reader, kind: int) -> None:
    magic, version, found = r.unpack(wf.PREFIX)
    if magic != wf.MAGIC:
        raise WireError("not pollinate wire data: the magic bytes are wrong")
    if version not in wf.SUPPORTED_VERSIONS:
        raise WireError(
            f"unsupported wire format version {version}: this pollinate reads version "
            f"{', '.join(map(str, wf.SUPPORTED_VERSIONS))} (is the sender's pollinate "
            "a different version?)"
        )
    if found != kind:
        found_name = _KIND_NAMES.get(found, f"unknown kind {found}")
        raise WireError(f"expected {_KIND_NAMES[kind]}, got {found_name}")


def _get_message(r: _Reader) -> Message:
    run_id, src, dst, ttl_s, created_at = r.unpack(wf.METADATA)
    message_id, message_type, reply_to, group_id = (r.text() for _ in range(4))
    metadata = Metadata(
        run_id=run_id,
        message_id=message_id,
        src_node_id=src,
        dst_node_id=dst,
        message_type=message_type,
        reply_to_message_id=reply_to,
        group_id=group_id,
        ttl_s=ttl_s,
        created_at=created_at,
    )
    body = r.u8()
    if body == wf.CONTENT:
        return Message(metadata, content=_get_record_dict(r))
    if body == wf.ERROR:
        (code,) = r.unpack(wf.I64)
        return Message(metadata, error=Error(code, r.text()))
    raise WireError(f"unknown message body kind {body}")


def _get_context(r: _Reader) -> Context:
    run_id, node_id = r.unpack(wf.CONTEXT_IDS)
    node_config = _get_user_config(r)
    run_config = _get_user_config(r)
    state = _get_record_dict(r)
    return Context(
        run_id=run_id, node_id=node_id, node_config=node_config, run_config=run_config, state=state
    )


def _get_user_config(r: _Reader) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for _ in range(r.count()):
        key, tag = r.text(), r.u8()
        if tag not in wf.USER_CONFIG_TAGS:
            raise WireError(f"config[{key!r}]: a config value must be a bool, int, float or str")
        _set(config, key, _get_tagged(r, tag))
    return config


def _get_record_dict(r: _Reader) -> RecordDict:
    records = RecordDict()
    for _ in range(r.count()):
        key, kind = r.text(), r.u8()
        record: Record
        if kind == wf.ARRAYS:
            record = _fill(r, ArrayRecord(), _get_array)
        elif kind == wf.METRICS:
            record = _fill(r, MetricRecord(), _get_value)
        elif kind == wf.CONFIGS:
            record = _fill(r, ConfigRecord(), _get_value)
        else:
            raise WireError(f"RecordDict[{key!r}]: unknown record kind {kind}")
        _set(records, key, record)
    return records


def _fill(r: _Reader, record: T, get: Callable[[_Reader], Any]) -> T:
    for _ in range(r.count()):
        key = r.text()
        _set(record, key, get(r))
    return record


def _set(target: Any, key: str, value: Any) -> None:
    """Set ``target[key]``, refusing duplicates and values the record's checks refuse."""
    size = len(target)  # not ``key in target``: a record's ``in`` formats a KeyError
    try:
        target[key] = value
    except RecordError as err:
        raise WireError(f"invalid value: {err}") from None
    if len(target) == size:
        raise WireError(f"duplicate key {key!r}")


def _get_value(r: _Reader) -> Any:
    return _get_tagged(r, r.u8())


def _get_tagged(r: _Reader, tag: int) -> Any:
    if tag == wf.INT:
        return r.unpack(wf.I64)[0]
    if tag == wf.FLOAT:
        return r.unpack(wf.F64)[0]
    if tag == wf.BOOL:
        return _get_bools(r, 1)[0]
    if tag == wf.STR:
        return r.text()
    if tag == wf.BYTES:
        return bytes(r.blob())
    if tag in (wf.LIST + wf.INT, wf.LIST + wf.FLOAT):
        n = r.list_count(8)
        fmt = f"<{n}{'q' if tag == wf.LIST + wf.INT else 'd'}"
        return list(struct.unpack_from(fmt, r.view, r.take(8 * n)))
    if tag == wf.LIST + wf.BOOL:
        return _get_bools(r, r.list_count(1))
    if tag == wf.LIST + wf.STR:
        return [r.text() for _ in range(r.list_count(4))]
    if tag == wf.LIST + wf.BYTES:
        return [bytes(r.blob()) for _ in range(r.list_count(4))]
    raise WireError(f"unknown value tag {tag} before offset {r.pos}")


def _get_bools(r: _Reader, n: int) -> list[bool]:
    start = r.take(n)
    raw = r.view[start : start + n].tobytes()
    if raw.translate(None, b"\x00\x01"):
        raise WireError(f"a bool at offset {start} is neither 0 nor 1")
    return [byte == 1 for byte in raw]


def _get_array(r: _Reader) -> Array:
    dtype = _get_dtype(r)
    ndim = r.u8()
    if ndim > wf.MAX_NDIM:
        raise WireError(f"an array has {ndim} dimensions, at most {wf.MAX_NDIM} are allowed")
    shape = struct.unpack_from(f"<{ndim}Q", r.view, r.take(8 * ndim))
    if _product(d for d in shape if d) * dtype.itemsize > sys.maxsize:
        raise WireError(f"array shape {shape} is too large")
    count = _product(shape)
    r.padding()
    offset = r.take(count * dtype.itemsize)  # the data must be there before it is viewed
    return Array(np.frombuffer(r.view, dtype, count, offset).reshape(shape))


def _get_dtype(r: _Reader) -> np.dtype[Any]:
    n = r.u8()
    start = r.take(n)
    text = r.view[start : start + n].tobytes().decode("ascii", "replace")
    dtype = _VALID_DTYPES.get(text)
    if dtype is None:
        dtype = _parse_dtype(text)
    return dtype


def _parse_dtype(text: str) -> np.dtype[Any]:
    """Only canonical numeric and bool dtype strings: never objects, strings or records."""
    dtype = None
    if _DTYPE.fullmatch(text):
        with contextlib.suppress(TypeError):  # a size this platform lacks, e.g. '<f12'
            dtype = np.dtype(text)
    if dtype is None or dtype.str != text or dtype.kind not in "biufc":
        raise WireError(f"unsupported array dtype {text!r}: only numeric and bool dtypes travel")
    _VALID_DTYPES[text] = dtype  # bounded: only a few dozen strings are valid
    return dtype


def _product(values: Iterable[int]) -> int:
    """The product of ``values`` as an exact Python int (numpy's would overflow)."""
    result = 1
    for value in values:
        result *= value
    return result
