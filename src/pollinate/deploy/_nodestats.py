"""What a link knows of each node's work: tasks sent, replies ok, failures and their reasons.

The link counts as it works (``NodeStats``, fed by its ``LinkGrid``) and answers
``Link.node_status()`` and Control's ``ListNodes`` with ``NodeStatus`` values. Every count
is O(1) per message and bounded: at most ``MAX_FAILURES`` recent failures per node, each
reason cut to ``MAX_REASON`` characters, and a node the link forgets is dropped here too.
``from_json`` reads what came over the wire: anything malformed is a WireError.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .._text import printable
from ..context import UserConfigValue
from ..errors import WireError

__all__ = ["MAX_FAILURES", "MAX_REASON", "NodeFailure", "NodeStats", "NodeStatus"]

MAX_FAILURES = 20
"""Recent failures kept per node; older ones are dropped (the counts keep them all)."""
MAX_REASON = 500
"""Characters of a failure's reason kept: a node's error text can be any length."""
_MAX_ID = 2**64
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NodeFailure:
    """A task that did not come back ok: when (unix seconds), in which run, and why.

    ``lost``: no reply came at all (the node disconnected, timed out, or the run gave up
    on it); else the node's reply was an error or could not be taken.
    """

    at: float
    run_id: int
    reason: str
    lost: bool = False

    def to_json(self) -> dict[str, Any]:
        """The failure as JSON."""
        return {"at": self.at, "run_id": self.run_id, "reason": self.reason, "lost": self.lost}

    @classmethod
    def from_json(cls, payload: object) -> NodeFailure:
        """The failure ``to_json`` wrote; WireError if anything is missing or malformed."""
        item = json_object(payload, "a node failure")
        reason = _field(item, "reason", str, "a node failure")
        if len(reason) > MAX_REASON:
            raise WireError(
                f"a node failure's reason has {len(reason)} characters, more than {MAX_REASON}"
            )
        return cls(
            json_number(item.get("at"), "a node failure's 'at'"),
            json_count(item.get("run_id"), "a node failure's 'run_id'"),
            reason,
            _field(item, "lost", bool, "a node failure"),
        )


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """A node as a link's operator sees it (``pollinate nodes``, the dashboard).

    ``last_seen`` is when the link last heard from it (unix seconds; None: not since the
    link started). ``tasks_failed`` counts every task that did not come back ok, of which
    ``tasks_lost`` got no reply at all; ``failures`` are the most recent, oldest first.
    """

    node_id: int
    connected: bool
    last_seen: float | None
    tasks_sent: int
    tasks_done: int
    tasks_failed: int
    failures: tuple[NodeFailure, ...]
    node_config: dict[str, UserConfigValue]
    tasks_lost: int = 0

    def to_json(self) -> dict[str, Any]:
        """The status as JSON (``pollinate nodes --json`` prints these)."""
        return {
            "node_id": self.node_id,
            "connected": self.connected,
            "last_seen": self.last_seen,
            "tasks_sent": self.tasks_sent,
            "tasks_done": self.tasks_done,
            "tasks_failed": self.tasks_failed,
            "tasks_lost": self.tasks_lost,
            "failures": [f.to_json() for f in self.failures],
            "node_config": dict(self.node_config),
        }

    @classmethod
    def from_json(cls, payload: object) -> NodeStatus:
        """The status ``to_json`` wrote; WireError if anything is missing or malformed."""
        item = json_object(payload, "a node status")
        failures = _field(item, "failures", list, "a node status")
        if len(failures) > MAX_FAILURES:
            raise WireError(
                f"a node status lists {len(failures)} failures, more than {MAX_FAILURES}"
            )
        last_seen = item.get("last_seen")
        return cls(
            node_id=json_count(item.get("node_id"), "a node status's 'node_id'"),
            connected=_field(item, "connected", bool, "a node status"),
            last_seen=None if last_seen is None else json_number(last_seen, "'last_seen'"),
            tasks_sent=json_count(item.get("tasks_sent"), "'tasks_sent'"),
            tasks_done=json_count(item.get("tasks_done"), "'tasks_done'"),
            tasks_failed=json_count(item.get("tasks_failed"), "'tasks_failed'"),
            tasks_lost=json_count(item.get("tasks_lost"), "'tasks_lost'"),
            failures=tuple(NodeFailure.from_json(f) for f in failures),
            node_config=_node_config(item.get("node_config")),
        )


def json_object(payload: object, what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise WireError(f"{what} must be a JSON object, got {type(payload).__name__}")
    return payload


def _field(item: dict[str, Any], key: str, kind: type[T], what: str) -> T:
    value = item.get(key)
    if type(value) is not kind:
        raise WireError(f"{what} needs {key!r} of type {kind.__name__}, got {value!r:.80}")
    return value


def json_count(value: object, what: str) -> int:
    """An int from 0 to 2**64 (not a bool)."""
    if type(value) is not int or not 0 <= value < _MAX_ID:
        raise WireError(f"{what} must be an int from 0 to 2**64, got {value!r:.80}")
    return value


def json_number(value: object, what: str) -> float:
    """A finite number (not a bool)."""
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise WireError(f"{what} must be a finite number, got {value!r:.80}")
    return float(value)  # type: ignore[arg-type]  # an int or float, checked just above


def _node_config(value: object) -> dict[str, UserConfigValue]:
    config = json_object(value, "a node status's 'node_config'")
    for key, item in config.items():
        if type(item) not in (bool, int, float, str) or (
            type(item) is float and not math.isfinite(item)
        ):
            raise WireError(f"node_config[{key!r:.80}] must be a bool, int, float or str")
    return config


@dataclass(slots=True)
class _Tally:
    """One node's counts, kept by ``NodeStats`` under its lock."""

    sent: int = 0
    done: int = 0
    failed: int = 0
    lost: int = 0
    failures: collections.deque[NodeFailure] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_FAILURES)
    )


class NodeStats:
    """Per-node counts of a link's work, safe to update from its gRPC threads.

    Only nodes ``add``-ed are counted (the link's registrations); ``forget`` drops them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[int, _Tally] = {}

    def add(self, node_id: int) -> None:
        """Count ``node_id``'s work from now on (kept if it is counted already)."""
        with self._lock:
            self._tallies.setdefault(node_id, _Tally())

    def forget(self, node_ids: list[int]) -> None:
        """Drop the counts of nodes the link forgot."""
        with self._lock:
            for node_id in node_ids:
                self._tallies.pop(node_id, None)

    def sent(self, node_id: int) -> None:
        """A task went to ``node_id``."""
        with self._lock:
            if (tally := self._tallies.get(node_id)) is not None:
                tally.sent += 1

    def done(self, node_id: int) -> None:
        """``node_id`` replied ok."""
        with self._lock:
            if (tally := self._tallies.get(node_id)) is not None:
                tally.done += 1

    def failed(self, node_id: int, run_id: int, reason: str, *, lost: bool = False) -> None:
        """A task of ``node_id`` failed: an error reply, or (``lost``) no reply at all.

        The reason is the node's text: its control characters are kept written out.
        """
        reason = printable(reason)
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 1] + "…"
        failure = NodeFailure(time.time(), run_id, reason, lost)
        with self._lock:
            if (tally := self._tallies.get(node_id)) is not None:
                tally.failed += 1
                tally.lost += lost
                tally.failures.append(failure)

    def status(
        self,
        node_id: int,
        connected: bool,
        last_seen: float | None,
        node_config: dict[str, UserConfigValue],
    ) -> NodeStatus:
        """``node_id``'s status, with its counts as they are now."""
        with self._lock:
            tally = self._tallies.get(node_id) or _Tally()
            failures = tuple(tally.failures)
            counts = (tally.sent, tally.done, tally.failed, tally.lost)
        sent, done, failed, lost = counts
        return NodeStatus(
            node_id, connected, last_seen, sent, done, failed, failures, node_config, lost
        )
