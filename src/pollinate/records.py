"""Records: the typed payloads a Message carries.

``ArrayRecord`` holds named arrays (model weights), ``MetricRecord`` named numbers,
``ConfigRecord`` named settings, and ``RecordDict`` groups records under names. Values are
checked when they are set, so a wrong type fails at the line that put it there, with the key
in the message.

Arrays are read-only: in simulation a message travels by reference, so one node must not be
able to change the weights another node (or the server) holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, TypeAlias, TypeVar

import numpy as np

from .errors import RecordError

__all__ = [
    "Array",
    "ArrayRecord",
    "ConfigRecord",
    "ConfigValue",
    "MAX_LIST_ITEMS",
    "MetricRecord",
    "MetricValue",
    "Record",
    "RecordDict",
    "is_finite_number",
]

MetricValue: TypeAlias = int | float | list[int] | list[float]
ConfigScalar: TypeAlias = int | float | str | bytes | bool
ConfigValue: TypeAlias = (
    int
    | float
    | str
    | bytes
    | bool
    | list[int]
    | list[float]
    | list[str]
    | list[bytes]
    | list[bool]
)

_NUMERIC_KINDS = "biufc"
MAX_LIST_ITEMS = 1 << 20
"""The most items a list value may hold, and all the lists of one message together: a list of
bools decodes to 8 bytes an item (16 for ints and floats), so lists stay a few MB, and data
of any size travels as an ArrayRecord, which decodes without a copy."""
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Array:
    """A read-only numpy array with a stable dtype and shape, the unit of model weights.

    Built from a numpy array, or any CPU array that speaks DLPack or ``__array__`` (a
    detached torch tensor, a JAX array), without copying when it is already contiguous;
    ``numpy()`` returns a read-only view, never a copy. ``pollinate.frameworks`` converts
    whole models.
    """

    __slots__ = ("_data",)

    def __init__(self, data: np.ndarray[Any, Any] | Any) -> None:
        if isinstance(data, Array):
            self._data: np.ndarray[Any, Any] = data._data
            return
        if not isinstance(data, np.ndarray):
            data = _to_numpy(data)
        if data.dtype.kind not in _NUMERIC_KINDS:
            raise RecordError(
                f"Array needs a numeric or boolean dtype, got {data.dtype}: convert the data "
                "to numbers first (object and string arrays cannot travel safely)"
            )
        if not data.flags.c_contiguous:  # (np.ascontiguousarray would make 0-d arrays 1-d)
            data = data.copy(order="C")
        view = data.view()
        view.flags.writeable = False
        self._data = view

    @classmethod
    def from_numpy(cls, data: np.ndarray[Any, Any]) -> Array:
        """Wrap a numpy array (no copy if it is contiguous)."""
        return cls(data)

    def numpy(self) -> np.ndarray[Any, Any]:
        """The data as a read-only numpy array (``np.array(a.numpy())`` for a writable copy)."""
        return self._data

    def snapshot(self) -> Array:
        """The array as it is now, to keep: itself if no one can write its memory, else a copy.

        An Array shares memory with what it was made from (a CPU tensor, the list a client
        returned). Whoever made it can still change that memory (the next client to train the
        same model object, in one process), so what is kept for later is snapshotted first.
        """
        base = self._data.base
        while isinstance(base, np.ndarray):
            if base.flags.writeable:
                return Array(self._data.copy())
            base = base.base
        return self

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of the data."""
        dtype: np.dtype[Any] = self._data.dtype
        return dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the data."""
        shape: tuple[int, ...] = self._data.shape
        return shape

    @property
    def nbytes(self) -> int:
        """The size of the data in bytes."""
        return int(self._data.nbytes)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray[Any, Any]:
        if dtype is None and not copy:
            return self._data
        return np.array(self._data, dtype=dtype, copy=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Array):
            return NotImplemented
        return (
            self.dtype == other.dtype
            and self.shape == other.shape
            and bool(np.array_equal(self._data, other._data, equal_nan=self.dtype.kind in "fc"))
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Array(shape={self.shape}, dtype={self.dtype})"


def _to_numpy(value: Any) -> np.ndarray[Any, Any]:
    """Read Python numbers, DLPack producers or ``__array__`` objects as a numpy array."""
    if isinstance(value, (list, tuple, int, float, bool, np.generic)):
        return np.asarray(value)
    try:
        if hasattr(value, "__dlpack__"):
            return np.from_dlpack(value)
        if hasattr(value, "__array__"):
            return np.asarray(value)
    except (BufferError, RuntimeError, TypeError, ValueError) as err:
        raise RecordError(
            f"a {type(value).__name__} could not be read as a numpy array ({err}): detach it "
            "and move it to the CPU first, or convert the model with pollinate.frameworks"
        ) from None
    raise RecordError(
        f"Array accepts numpy arrays and CPU tensors (DLPack or __array__), got "
        f"{type(value).__name__}"
    )


_V = TypeVar("_V")
_S = TypeVar("_S", int, float, str, bytes, bool)


class _TypedRecord(MutableMapping[str, _V]):
    """An ordered str -> value mapping that checks each value as it is set."""

    __slots__ = ("_items",)
    _kind = "record"

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        self._items: dict[str, _V] = {}
        if type(items) is type(self):  # a copy: its values were checked when they were set
            self._items.update(items._items)
            return
        pairs = items.items() if isinstance(items, Mapping) else items
        for key, value in pairs:
            self[key] = value

    def _check(self, key: str, value: Any) -> _V:
        raise NotImplementedError

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise RecordError(f"{self._kind} keys must be str, got {type(key).__name__} {key!r}")
        self._items[key] = self._check(key, value)

    def __getitem__(self, key: str) -> _V:
        try:
            return self._items[key]
        except KeyError:
            known = ", ".join(repr(k) for k in self._items) or "none"
            raise KeyError(f"{self._kind} has no key {key!r} (keys: {known})") from None

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` if there is none."""
        return self._items.get(key, default)

    def __delitem__(self, key: str) -> None:
        del self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _TypedRecord)
        return list(self._items.items()) == list(other._items.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class ArrayRecord(_TypedRecord[Array]):
    """Ordered named arrays: a model's weights, a gradient, a control variate.

    Build it from a dict of arrays (a detached CPU ``state_dict`` works as it is) or a list of
    numpy arrays (named "0", "1", ...); get them back with ``to_numpy()``.
    ``pollinate.frameworks`` converts PyTorch, Keras and JAX models both ways.
    """

    __slots__ = ()
    _kind = "ArrayRecord"

    def _check(self, key: str, value: Any) -> Array:
        try:
            return value if isinstance(value, Array) else Array(value)
        except RecordError as err:
            raise RecordError(f"ArrayRecord[{key!r}]: {err}") from None

    @classmethod
    def from_numpy(cls, arrays: Sequence[np.ndarray[Any, Any]]) -> ArrayRecord:
        """Name a list of arrays by position ("0", "1", ...), as the classic API passes them."""
        return cls((str(i), a) for i, a in enumerate(arrays))

    def to_numpy(self) -> list[np.ndarray[Any, Any]]:
        """The arrays in order, as read-only numpy arrays."""
        return [a.numpy() for a in self._items.values()]

    def snapshot(self) -> ArrayRecord:
        """The record as it is now, to keep (``Array.snapshot``): copies only what may change."""
        return ArrayRecord((name, a.snapshot()) for name, a in self._items.items())

    @property
    def nbytes(self) -> int:
        """Total size of all arrays in bytes."""
        return sum(a.nbytes for a in self._items.values())


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_float(value: Any) -> bool:
    return isinstance(value, (float, np.floating))


def _as_number(value: Any) -> int | float | None:
    """A Python int or float for an int/float (numpy scalars and 0-d arrays too), else None."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if _is_int(value):
        return int(value)
    if _is_float(value):
        return float(value)
    return None


def _check_length(kind: str, key: str, value: Any) -> None:
    """Refuse a list longer than ``MAX_LIST_ITEMS`` before looking at its items."""
    sized = isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim)
    if sized and len(value) > MAX_LIST_ITEMS:
        raise RecordError(
            f"{kind}[{key!r}] holds {len(value):,} items, more than the {MAX_LIST_ITEMS:,} a "
            "list may hold: send data this size as an ArrayRecord"
        )


def _check_int64(kind: str, key: str, values: Iterable[Any]) -> None:
    """Refuse ints beyond 64 bits where they are set: the wire carries ints as int64."""
    for value in values:
        if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
            shown = (
                repr(value) if value.bit_length() <= 256 else f"an int of {value.bit_length()} bits"
            )
            raise RecordError(
                f"{kind}[{key!r}] = {shown} does not fit in 64 bits: ints travel as signed "
                "64-bit integers, so send a float (or a str) instead"
            )


class MetricRecord(_TypedRecord[MetricValue]):
    """Named numbers: an int, a float, or a list of either (numpy scalars are converted).

    Ints must fit in 64 bits (signed), as they travel; a list holds at most
    ``MAX_LIST_ITEMS`` items.
    """

    __slots__ = ()
    _kind = "MetricRecord"

    def _check(self, key: str, value: Any) -> MetricValue:
        _check_length(self._kind, key, value)
        checked = self._number_or_list(value)
        if checked is None:
            raise RecordError(
                f"MetricRecord[{key!r}] must be an int, a float or a list of them, "
                f"got {type(value).__name__} {_short(value)}"
            )
        _check_int64(self._kind, key, checked if isinstance(checked, list) else [checked])
        return checked

    @staticmethod
    def _number_or_list(value: Any) -> MetricValue | None:
        number = _as_number(value)
        if number is not None:
            return number
        if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1):
            items = [_as_number(v) for v in value]
            if all(v is not None for v in items):
                if all(isinstance(v, int) for v in items):
                    return [int(v) for v in items if v is not None]
                return [float(v) for v in items if v is not None]
        return None


def _config_scalar(value: Any) -> ConfigScalar | None:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    number = _as_number(value)
    if number is not None:
        return number
    if isinstance(value, (str, bytes)):
        return value
    return None


class ConfigRecord(_TypedRecord[ConfigValue]):
    """Named settings: int, float, str, bytes, bool, or a list of one of those types."""

    __slots__ = ()
    _kind = "ConfigRecord"

    def value(self, key: str, kind: type[_S]) -> _S:
        """The value under ``key`` as a ``kind`` (int, float, str, bytes or bool), typed.

        An int is accepted where a float is asked for; anything else that is not a ``kind``
        is a RecordError naming the key.
        """
        value = self[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # type: ignore[return-value]
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        raise RecordError(
            f"ConfigRecord[{key!r}] is {type(value).__name__} {_short(value)}, "
            f"expected {kind.__name__}"
        )

    def _check(self, key: str, value: Any) -> ConfigValue:
        _check_length(self._kind, key, value)
        checked = self._scalar_or_list(value)
        if checked is None:
            raise RecordError(
                f"ConfigRecord[{key!r}] must be int, float, str, bytes, bool or a list of one "
                f"of those, got {type(value).__name__} {_short(value)}"
            )
        _check_int64(self._kind, key, checked if isinstance(checked, list) else [checked])
        return checked

    @staticmethod
    def _scalar_or_list(value: Any) -> ConfigValue | None:
        scalar = _config_scalar(value)
        if scalar is not None:
            return scalar
        if isinstance(value, (list, tuple)):
            items = [_config_scalar(v) for v in value]
            kinds = {_scalar_kind(v) for v in items}
            if None not in items and len(kinds) <= 1:
                return items  # type: ignore[return-value]
            if None not in items and kinds == {int, float}:
                return [float(v) for v in items]  # type: ignore[arg-type]
        return None


def _scalar_kind(value: ConfigScalar | None) -> type | None:
    return None if value is None else type(value)


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "AEIOU" else f"a {noun}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


Record: TypeAlias = ArrayRecord | MetricRecord | ConfigRecord
_R = TypeVar("_R", ArrayRecord, MetricRecord, ConfigRecord)
_RECORD_TYPES = (ArrayRecord, MetricRecord, ConfigRecord)


class RecordDict(_TypedRecord[Record]):
    """Records under names: the content of a Message, or a node's persistent state.

    ``rd["arrays"] = ArrayRecord(...)``; the typed views ``array_records``,
    ``metric_records`` and ``config_records`` list the records of one kind.
    """

    __slots__ = ()
    _kind = "RecordDict"

    def _check(self, key: str, value: Any) -> Record:
        if isinstance(value, _RECORD_TYPES):
            return value
        raise RecordError(
            f"RecordDict[{key!r}] must be an ArrayRecord, MetricRecord or ConfigRecord, "
            f"got {type(value).__name__}"
        )

    def arrays(self, key: str = "arrays") -> ArrayRecord:
        """The ArrayRecord under ``key`` (a clear RecordError if there is none)."""
        return self._typed(key, ArrayRecord)

    def metrics(self, key: str = "metrics") -> MetricRecord:
        """The MetricRecord under ``key`` (a clear RecordError if there is none)."""
        return self._typed(key, MetricRecord)

    def config(self, key: str = "config") -> ConfigRecord:
        """The ConfigRecord under ``key`` (a clear RecordError if there is none)."""
        return self._typed(key, ConfigRecord)

    def _typed(self, key: str, kind: type[_R]) -> _R:
        value = self._items.get(key)
        if isinstance(value, kind):
            return value
        found = _a(type(value).__name__) if value is not None else "nothing"
        known = ", ".join(repr(k) for k in self._items) or "none"
        raise RecordError(
            f"expected {_a(kind.__name__)} under {key!r}, found {found} (keys: {known})"
        )

    @property
    def array_records(self) -> dict[str, ArrayRecord]:
        """The ArrayRecords, by name."""
        return {k: v for k, v in self.items() if isinstance(v, ArrayRecord)}

    @property
    def metric_records(self) -> dict[str, MetricRecord]:
        """The MetricRecords, by name."""
        return {k: v for k, v in self.items() if isinstance(v, MetricRecord)}

    @property
    def config_records(self) -> dict[str, ConfigRecord]:
        """The ConfigRecords, by name."""
        return {k: v for k, v in self.items() if isinstance(v, ConfigRecord)}


def is_finite_number(value: Any) -> bool:
    """True for an int or float that is neither NaN nor infinite."""
    number = _as_number(value)
    try:
        return number is not None and math.isfinite(number)
    except OverflowError:  # an int too large for a float
        return False
