"""Flower's message-API data types, as views over pollinate's records, messages and contexts.

``Array``, ``ArrayRecord``, ``ConfigRecord``, ``MetricRecord`` and ``RecordDict`` subclass
pollinate's own, so whatever user code builds travels on every transport as it is. They add
Flower's constructors and methods (``ArrayRecord(model.state_dict())``,
``to_torch_state_dict()``, ``to_numpy_ndarrays()``). ``flower_record`` views a pollinate
record as the Flower type: the view shares the record's items, so nothing is copied and what
user code writes into it lands in the original (``context.state`` keeps what a node stores).

``Message`` wraps a pollinate ``Message`` (Flower's ``has_error()`` is a method where
pollinate's is a property) and ``core_message`` unwraps it where user code hands it back.
``Context`` is a pollinate Context whose ``state`` is a Flower ``RecordDict`` view.
``flower_message`` and ``flower_context`` are the two converters the rest of
``pollinate.compat.flwr`` uses.
"""

from __future__ import annotations

import io
import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, overload

import numpy as np

from ... import context as _context
from ... import message as _message
from ... import records as _records
from ...errors import RecordError
from ...message import DEFAULT_TTL
from ...message import Error as Error
from ...message import MessageType as MessageType

if TYPE_CHECKING:
    import torch

__all__ = [
    "Array",
    "ArrayRecord",
    "ConfigRecord",
    "Context",
    "Error",
    "Message",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "RecordDict",
    "UserConfig",
    "UserConfigValue",
    "core_message",
    "flower_context",
    "flower_message",
    "flower_record",
    "flower_record_dict",
]

UserConfigValue: TypeAlias = _context.UserConfigValue
UserConfig: TypeAlias = _context.UserConfig

_T = TypeVar("_T")


def _view(cls: type[_T], items: dict[str, Any]) -> _T:
    """An instance of ``cls`` sharing ``items`` (a record's own dict): no copy."""
    record = object.__new__(cls)
    record._items = items  # type: ignore[attr-defined]
    return record


def _one_argument(what: str, *candidates: object) -> object:
    """The one argument given among Flower's alternative spellings (None if none)."""
    given = [c for c in candidates if c is not None]
    if len(given) > 1:
        raise RecordError(f"{what} takes one source of values, got {len(given)}")
    return given[0] if given else None


def _check_declared(decoded: np.ndarray[Any, Any], dtype: object, shape: object) -> None:
    """Refuse serialized data that is not the dtype and shape its Array says it is."""
    if dtype is not None:
        try:
            declared = np.dtype(str(dtype))
        except TypeError:
            raise RecordError(f"Array dtype {dtype!r} is not a numpy dtype") from None
        if decoded.dtype != declared:
            raise RecordError(f"Array says dtype {declared} but its data holds {decoded.dtype}")
    if shape is not None and (
        not isinstance(shape, (list, tuple)) or tuple(shape) != decoded.shape
    ):
        raise RecordError(f"Array says shape {shape!r} but its data holds {decoded.shape}")


class Array(_records.Array):
    """Flower's ``Array``: a pollinate Array (read-only, no copy) with Flower's constructors.

    ``Array(ndarray)``, ``Array(tensor)`` and Flower's serialized form
    ``Array(dtype, shape, stype, data)`` (``data`` as ``np.save`` writes it) all work.
    """

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) + len(kwargs) == 1:
            value = args[0] if args else next(iter(kwargs.values()))
            super().__init__(value)
            return
        fields = dict(zip(("dtype", "shape", "stype", "data"), args, strict=False), **kwargs)
        data = fields.get("data")
        if not isinstance(data, bytes):
            raise RecordError(
                "Array takes a numpy array or a tensor, or Flower's serialized form "
                "Array(dtype, shape, stype, data) with data as bytes"
            )
        if fields.get("stype", "numpy.ndarray") != "numpy.ndarray":
            raise RecordError(
                f"Array stype {fields['stype']!r} is not supported: pollinate reads Flower's "
                "'numpy.ndarray' serialization (np.save bytes)"
            )
        try:
            decoded = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError):
            raise RecordError(
                "Array data must be np.save bytes of a numeric array (pickled data is refused)"
            ) from None
        _check_declared(decoded, fields.get("dtype"), fields.get("shape"))
        super().__init__(decoded)

    @classmethod
    def from_numpy_ndarray(cls, ndarray: np.ndarray[Any, Any]) -> Array:
        """Wrap a numpy array (no copy if it is contiguous)."""
        return cls(ndarray)

    @property
    def stype(self) -> str:
        """Flower's serialization type: always ``"numpy.ndarray"``."""
        return "numpy.ndarray"

    @property
    def data(self) -> bytes:
        """The array serialized as Flower does (``np.save``'s bytes): a copy."""
        buffer = io.BytesIO()
        np.save(buffer, self.numpy(), allow_pickle=False)
        return buffer.getvalue()


class ArrayRecord(_records.ArrayRecord):
    """Flower's ``ArrayRecord``: a pollinate ArrayRecord with Flower's ways in and out.

    ``ArrayRecord(model.state_dict())`` and ``ArrayRecord([ndarray, ...])`` (named "0",
    "1", ...) hold the values as they are then, as Flower's do: memory the caller can still
    change (a model that trains on) is copied. ``to_torch_state_dict()`` and
    ``to_numpy_ndarrays()`` give new, writable tensors and arrays, as Flower's do.
    ``keep_input=False`` empties the input afterwards.
    """

    __slots__ = ()

    def __init__(
        self,
        *args: Any,
        numpy_ndarrays: list[np.ndarray[Any, Any]] | None = None,
        torch_state_dict: Mapping[str, Any] | None = None,
        array_dict: Mapping[str, Any] | None = None,
        keep_input: bool = True,
    ) -> None:
        if len(args) > 1:
            raise RecordError(
                "ArrayRecord takes one source of arrays: a list of numpy arrays, a PyTorch "
                "state_dict, or a dict of Arrays (keep_input is keyword-only)"
            )
        source = _one_argument(
            "ArrayRecord", args[0] if args else None, numpy_ndarrays, torch_state_dict, array_dict
        )
        if source is None:
            super().__init__()
        elif isinstance(source, (list, tuple)):
            super().__init__(_records.ArrayRecord.from_numpy(source).snapshot())
        elif isinstance(source, Mapping) and _holds_tensors(source):
            from ...frameworks import torch as torch_arrays

            super().__init__(torch_arrays.to_arrays(source).snapshot())
        elif isinstance(source, Mapping):
            super().__init__(source)
        else:
            raise RecordError(
                f"ArrayRecord takes a list of numpy arrays, a PyTorch state_dict or a dict of "
                f"Arrays, got {type(source).__name__}"
            )
        if not keep_input and isinstance(source, (list, dict)):
            source.clear()

    @classmethod
    def from_numpy_ndarrays(
        cls, ndarrays: list[np.ndarray[Any, Any]], *, keep_input: bool = True
    ) -> ArrayRecord:
        """Name a list of arrays by position ("0", "1", ...)."""
        return cls(numpy_ndarrays=ndarrays, keep_input=keep_input)

    @classmethod
    def from_torch_state_dict(
        cls, state_dict: Mapping[str, Any], *, keep_input: bool = True
    ) -> ArrayRecord:
        """A PyTorch ``state_dict`` as a record, as it is now (the model may train on)."""
        return cls(torch_state_dict=state_dict, keep_input=keep_input)

    @classmethod
    def from_array_dict(
        cls, array_dict: Mapping[str, Any], *, keep_input: bool = True
    ) -> ArrayRecord:
        """A dict of Arrays as a record (the Arrays are shared, not copied)."""
        return cls(array_dict=array_dict, keep_input=keep_input)

    def to_numpy_ndarrays(self, *, keep_input: bool = True) -> list[np.ndarray[Any, Any]]:
        """The arrays in order, as new writable numpy arrays (Flower's arrays are copies)."""
        arrays = [np.array(a.numpy()) for a in self._items.values()]
        if not keep_input:
            self.clear()
        return arrays

    def to_torch_state_dict(self, *, keep_input: bool = True) -> OrderedDict[str, torch.Tensor]:
        """The record as a ``state_dict`` of new CPU tensors, for ``model.load_state_dict``."""
        from ...frameworks import torch as torch_arrays

        state_dict = torch_arrays.to_state_dict(self)
        if not keep_input:
            self.clear()
        return state_dict

    def count_bytes(self) -> int:
        """The size of the arrays and their names in bytes."""
        return self.nbytes + sum(len(k) for k in self._items)


def _holds_tensors(values: Mapping[str, Any]) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and any(isinstance(v, torch.Tensor) for v in values.values())


class MetricRecord(_records.MetricRecord):
    """Flower's ``MetricRecord``: ``MetricRecord({"accuracy": 0.9, "num-examples": 50})``."""

    __slots__ = ()

    def __init__(
        self,
        metric_dict: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        keep_input: bool = True,
    ) -> None:
        super().__init__(metric_dict or ())
        if not keep_input and isinstance(metric_dict, dict):
            metric_dict.clear()


class ConfigRecord(_records.ConfigRecord):
    """Flower's ``ConfigRecord``: ``ConfigRecord({"lr": 0.1})``."""

    __slots__ = ()

    def __init__(
        self,
        config_dict: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        keep_input: bool = True,
    ) -> None:
        super().__init__(config_dict or ())
        if not keep_input and isinstance(config_dict, dict):
            config_dict.clear()


_FLOWER_TYPES: dict[type, type] = {
    _records.ArrayRecord: ArrayRecord,
    _records.MetricRecord: MetricRecord,
    _records.ConfigRecord: ConfigRecord,
}


@overload
def flower_record(record: _records.ArrayRecord) -> ArrayRecord: ...
@overload
def flower_record(record: _records.MetricRecord) -> MetricRecord: ...
@overload
def flower_record(record: _records.ConfigRecord) -> ConfigRecord: ...
def flower_record(record: _records.Record) -> _records.Record:
    """``record`` as its Flower type, sharing its items (a Flower record is returned as is)."""
    flower_type = _FLOWER_TYPES.get(type(record))
    if flower_type is None:
        return record
    view: _records.Record = _view(flower_type, record._items)
    return view


class RecordDict(_records.RecordDict):
    """Flower's ``RecordDict``: records read from it are Flower records (views, no copies)."""

    __slots__ = ()

    def __init__(
        self, records: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None
    ) -> None:
        super().__init__(records or ())

    def __getitem__(self, key: str) -> _records.Record:
        return flower_record(super().__getitem__(key))

    def get(self, key: str, default: Any = None) -> Any:
        """The record under ``key`` (a Flower view), or ``default`` if there is none."""
        record = self._items.get(key)
        return default if record is None else flower_record(record)

    def arrays(self, key: str = "arrays") -> ArrayRecord:
        """The ArrayRecord under ``key``, as a Flower ArrayRecord."""
        return flower_record(super().arrays(key))

    def metrics(self, key: str = "metrics") -> MetricRecord:
        """The MetricRecord under ``key``, as a Flower MetricRecord."""
        return flower_record(super().metrics(key))

    def config(self, key: str = "config") -> ConfigRecord:
        """The ConfigRecord under ``key``, as a Flower ConfigRecord."""
        return flower_record(super().config(key))

    @property
    def array_records(self) -> MutableMapping[str, ArrayRecord]:  # type: ignore[override]
        """The ArrayRecords, by name: Flower's view, whose writes land in this RecordDict."""
        return _RecordsOfKind(self, _records.ArrayRecord, "array_records")

    @property
    def metric_records(self) -> MutableMapping[str, MetricRecord]:  # type: ignore[override]
        """The MetricRecords, by name: Flower's view, whose writes land in this RecordDict."""
        return _RecordsOfKind(self, _records.MetricRecord, "metric_records")

    @property
    def config_records(self) -> MutableMapping[str, ConfigRecord]:  # type: ignore[override]
        """The ConfigRecords, by name: Flower's view, whose writes land in this RecordDict.

        ``context.state.config_records["history"] = ConfigRecord()`` keeps it in the node's
        state, as in Flower.
        """
        return _RecordsOfKind(self, _records.ConfigRecord, "config_records")


class _RecordsOfKind(MutableMapping[str, Any]):
    """The records of one kind in a RecordDict, read as Flower views; writes go to the dict."""

    __slots__ = ("_kind", "_name", "_owner")

    def __init__(self, owner: RecordDict, kind: type[_records.Record], name: str) -> None:
        self._owner = owner
        self._kind = kind
        self._name = name

    def __getitem__(self, key: str) -> Any:
        if not isinstance(self._owner.get(key), self._kind):
            raise KeyError(key)
        return self._owner[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(value, self._kind):
            raise RecordError(
                f"{self._name}[{key!r}] takes a {self._kind.__name__}, got {type(value).__name__}"
            )
        self._owner[key] = value

    def __delitem__(self, key: str) -> None:
        self[key]  # a KeyError for a record of another kind
        del self._owner[key]

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, v in self._owner.items() if isinstance(v, self._kind)])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return repr(dict(self))


def flower_record_dict(records: _records.RecordDict) -> RecordDict:
    """``records`` as a Flower RecordDict sharing its items (writes land in the original)."""
    if isinstance(records, RecordDict):
        return records
    if not isinstance(records, _records.RecordDict):
        raise RecordError(
            f"expected a RecordDict, got {type(records).__name__}: wrap records with "
            "RecordDict({'name': ArrayRecord(...), ...})"
        )
    return _view(RecordDict, records._items)


@dataclass(frozen=True, slots=True)
class Metadata(_message.Metadata):
    """Flower's ``Metadata``: pollinate's, with Flower's ``ttl`` (pollinate's ``ttl_s``)."""

    @property
    def ttl(self) -> float:
        """Seconds the message stays valid after ``created_at``."""
        return self.ttl_s


class Message:
    """Flower's ``Message``: a pollinate Message behind Flower's constructors and methods.

    ``Message(content, dst_node_id, message_type)`` makes a message for a node (the grid
    fills in the run id), ``Message(content, reply_to=msg)`` and ``Message(error,
    reply_to=msg)`` answer one. ``has_content()`` and ``has_error()`` are methods, as in
    Flower; ``content`` is a Flower RecordDict view of the message's own records.
    """

    __slots__ = ("_core",)

    def __init__(
        self,
        *args: Any,
        dst_node_id: int | None = None,
        message_type: str | None = None,
        content: _records.RecordDict | None = None,
        error: Error | None = None,
        ttl: float | None = None,
        group_id: str | None = None,
        reply_to: Message | _message.Message | None = None,
    ) -> None:
        positional = list(args)
        first = positional.pop(0) if positional else None
        if isinstance(first, Error):
            error = _one_argument("Message", first, error)  # type: ignore[assignment]
        elif first is not None:
            content = _one_argument("Message", first, content)  # type: ignore[assignment]
        if positional:
            dst_node_id = _one_argument("Message", positional.pop(0), dst_node_id)  # type: ignore[assignment]
        if positional:
            message_type = _one_argument("Message", positional.pop(0), message_type)  # type: ignore[assignment]
        if positional:
            raise RecordError("Message takes at most content, dst_node_id and message_type")
        if (content is None) == (error is None):
            raise RecordError("a Message holds content (a RecordDict) or an error, exactly one")
        if reply_to is not None:
            self._core = _reply(core_message(reply_to), content, error, dst_node_id, message_type)
            return
        if error is not None or content is None:
            raise RecordError("an error Message answers another: Message(error, reply_to=msg)")
        if dst_node_id is None or message_type is None:
            raise RecordError(
                "a new Message needs dst_node_id and message_type: Message(content, "
                'dst_node_id, "train"), or reply_to=msg to answer a message'
            )
        if isinstance(dst_node_id, bool) or not isinstance(dst_node_id, (int, np.integer)):
            raise RecordError(
                f"dst_node_id must be a node id (an int from grid.get_node_ids()), got "
                f"{type(dst_node_id).__name__}"
            )
        self._core = _message.Message.create(
            _content(content),
            int(dst_node_id),
            message_type,
            group_id=group_id or "",
            ttl_s=DEFAULT_TTL if ttl is None else float(ttl),
        )

    @classmethod
    def _wrap(cls, core: _message.Message) -> Message:
        message = object.__new__(cls)
        message._core = core
        return message

    @property
    def metadata(self) -> Metadata:
        """Who sent it, to whom, what kind, in answer to what."""
        md = self._core.metadata
        return Metadata(
            md.run_id,
            md.message_id,
            md.src_node_id,
            md.dst_node_id,
            md.message_type,
            md.reply_to_message_id,
            md.group_id,
            md.ttl_s,
            md.created_at,
        )

    @property
    def content(self) -> RecordDict:
        """The records it carries (empty when it carries an error)."""
        return flower_record_dict(self._core.content)

    @property
    def error(self) -> Error | None:
        """The error it carries instead of content, if any."""
        return self._core.error

    def has_content(self) -> bool:
        """True when the message carries content rather than an error."""
        return self._core.has_content

    def has_error(self) -> bool:
        """True when the message carries an error rather than content."""
        return self._core.has_error

    def create_reply(self, content: _records.RecordDict, ttl: float | None = None) -> Message:
        """The reply to this message (Flower 1.x's spelling of ``Message(content, reply_to=)``)."""
        return Message(content, reply_to=self)

    def create_error_reply(self, error: Error, ttl: float | None = None) -> Message:
        """An error reply to this message."""
        return Message(error, reply_to=self)

    def __repr__(self) -> str:
        md = self._core.metadata
        what = f"error={self.error!r}" if self.has_error() else f"content={list(self.content)}"
        return (
            f"Message(message_type={md.message_type!r}, src_node_id={md.src_node_id}, "
            f"dst_node_id={md.dst_node_id}, {what})"
        )


def _content(content: object) -> _records.RecordDict:
    if not isinstance(content, _records.RecordDict):
        raise RecordError(
            f"Message content must be a RecordDict, got {type(content).__name__}: wrap the "
            'records, e.g. RecordDict({"arrays": arrays, "metrics": metrics})'
        )
    return content


def _reply(
    to: _message.Message,
    content: _records.RecordDict | None,
    error: Error | None,
    dst_node_id: int | None,
    message_type: str | None,
) -> _message.Message:
    if dst_node_id is not None or message_type is not None:
        raise RecordError(
            "a reply takes its node and type from the message it answers: give reply_to "
            "without dst_node_id and message_type"
        )
    if error is not None:
        return to.reply_error(error.code, error.reason or "")
    return to.reply(_content(content))


def core_message(message: Message | _message.Message) -> _message.Message:
    """The pollinate Message behind a Flower one (a pollinate Message is returned as is)."""
    if isinstance(message, Message):
        return message._core
    if isinstance(message, _message.Message):
        return message
    raise RecordError(
        f"expected a Message, got {type(message).__name__}: build replies with "
        "Message(content, reply_to=msg)"
    )


def flower_message(message: _message.Message) -> Message:
    """A pollinate Message as Flower's (a view: its records are shared, not copied)."""
    return Message._wrap(message)


class Context(_context.Context):
    """Flower's ``Context(run_id, node_id, node_config, state, run_config)``.

    A pollinate Context (the same fields, in Flower's order) whose ``state`` is a Flower
    RecordDict: what a node stores there persists across rounds.
    """

    __slots__ = ()

    def __init__(
        self,
        run_id: int,
        node_id: int,
        node_config: UserConfig,
        state: _records.RecordDict,
        run_config: UserConfig,
    ) -> None:
        super().__init__(run_id, node_id, node_config, run_config, flower_record_dict(state))


def flower_context(context: _context.Context) -> Context:
    """A pollinate Context as Flower's; its ``state`` is a view of the node's own state."""
    if isinstance(context, Context):
        return context
    return Context(
        context.run_id, context.node_id, context.node_config, context.state, context.run_config
    )
