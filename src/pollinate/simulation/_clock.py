"""The simulated clock: when each task of a clocked ``SimulationGrid`` ends, or fails, and how.

A task sent at simulated time ``t_send`` to node n starts at ``start = max(t_send, the end of
n's previous task)`` and takes::

    duration = compute_s / speed + down_bytes / download_bps + up_bytes / upload_bps

``compute_s`` is the task's compute measured on this machine (``TaskResult.compute_s``), or
``seconds_per_example`` times the reply's ``num-examples`` metric when the population sets
it (deterministic: bit-for-bit reproducible times); the bytes are the ArrayRecords' of the
message and of the reply. The reply arrives at ``start + duration``, unless the population
drops the node ``f`` of the way through (``dropout_at``) or the node goes away first
(``available_until``): then NODE_UNAVAILABLE comes at that moment. The grid applies
timeouts (docs/heterogeneity.md).

The clock reads the metric named ``num-examples`` whatever a strategy's ``weight_key``: a
successful reply without it costs no compute (one warning per clock says so), and one whose
``num-examples`` is not a finite number >= 0 becomes an INVALID_REPLY error. A task whose end
would still not be a finite time (a hand-made population's speed of 1e-320, say) fails with
an UNKNOWN error at its start, so the clock never leaves finite time.

The grid needs only the ``Population`` protocol below; ``PopulationModel`` (the user-facing
builder) makes one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..message import ErrorCode, Message

__all__ = ["Arrival", "Clock", "Device", "Population", "PopulationBuilder"]

log = logging.getLogger("pollinate.simulation")

NUM_EXAMPLES = "num-examples"


class Device(Protocol):
    """One node's hardware: compute speed relative to this machine, and bytes per second."""

    @property
    def speed(self) -> float:
        """2.0 trains twice as fast as this machine."""

    @property
    def download_bps(self) -> float:
        """Bytes per second, server to node (``math.inf``: free)."""

    @property
    def upload_bps(self) -> float:
        """Bytes per second, node to server (``math.inf``: free)."""


class Population(Protocol):
    """A population materialized for ``num_nodes`` nodes (ids 1..N): what a clocked grid asks."""

    @property
    def num_nodes(self) -> int:
        """How many nodes it describes."""

    @property
    def seconds_per_example(self) -> float | None:
        """Compute per example (None: a task's compute is its measured seconds)."""

    def device(self, node_id: int) -> Device:
        """The node's speed and bandwidths."""

    def available_nodes(self, t: float) -> Sequence[int]:
        """The sorted ids of the nodes available at simulated time ``t``."""

    def available_until(self, node_id: int, t: float) -> float:
        """When a node available at ``t`` next goes away (``math.inf``: never).

        ``t`` itself, or earlier, for a node not available at ``t``.
        """

    def next_available(self, t: float, count: int) -> float:
        """The earliest ``t' >= t`` with ``count`` nodes available (``math.inf``: never)."""

    def dropout_at(self, node_id: int, task_index: int) -> float | None:
        """The fraction of the node's ``task_index``-th task done when it goes away.

        None: the task completes.
        """


@runtime_checkable
class PopulationBuilder(Protocol):
    """What builds a population for a federation's size (``PopulationModel``)."""

    def build(self, num_nodes: int) -> Population:
        """The population of ``num_nodes`` nodes."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """A reply held for the server: it arrives at ``time``; ``order`` (sending order) breaks ties.

    In an unclocked grid ``time`` is the reply's rank among those that finished.
    """

    message_id: str
    time: float
    order: int
    reply: Message


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a task ends on the clock: when, with which reply, and whether the node finished it."""

    time: float
    reply: Message
    completed: bool


class Clock:
    """Simulated time over a population: ``now``, and when each node is free again.

    A node is busy with a task until it ends or fails, whatever the server does meanwhile
    (a timeout or ``abandon``): the next task it is sent starts no sooner. Tasks are counted
    per node for ``dropout_at`` as they are scheduled, which the grid does in sending order.
    """

    def __init__(self, population: Population) -> None:
        self.population = population
        self.now = 0.0
        self._free_at: dict[int, float] = {}
        self._tasks: dict[int, int] = {}
        self._warned = False

    def advance(self, t: float) -> None:
        """Move the clock on to ``t`` (never back: a reply held since earlier arrives now)."""
        self.now = max(self.now, t)

    def schedule(
        self, message: Message, reply: Message, compute_s: float | None, sent_at: float
    ) -> Outcome:
        """When and how the task of ``message``, answered by ``reply``, ends (module docstring)."""
        node = message.metadata.dst_node_id
        population = self.population
        start = max(sent_at, self._free_at.get(node, 0.0))
        index = self._tasks.get(node, 0)
        self._tasks[node] = index + 1
        device = population.device(node)
        reply, compute = self._compute_s(message, reply, compute_s)
        duration = (
            compute / device.speed
            + _array_bytes(message) / device.download_bps
            + _array_bytes(reply) / device.upload_bps
        )
        end = start + duration
        if not math.isfinite(end):  # the clock must stay finite, whatever the population says
            self._free_at[node] = start
            reason = (
                f"node {node}'s task would take {duration!r} s of simulated time (speed "
                f"{device.speed!r}, download {device.download_bps!r} B/s, upload "
                f"{device.upload_bps!r} B/s); give the population finite, positive speeds "
                "and bandwidths"
            )
            return Outcome(start, message.reply_error(ErrorCode.UNKNOWN, reason), False)
        until = population.available_until(node, start)
        fraction = population.dropout_at(node, index)
        dropped = math.inf if fraction is None else start + fraction * duration
        outcome = Outcome(end, reply, True)
        if until < end and until <= dropped:
            reason = (
                f"node {node} became unavailable at {until:.6g} s of simulated time, before it "
                f"finished the task"
            )
            outcome = Outcome(max(until, start), message.reply_error(_GONE, reason), False)
        elif fraction is not None:
            reason = (
                f"node {node} dropped out {fraction:.0%} into the task, at {dropped:.6g} s of "
                "simulated time"
            )
            outcome = Outcome(dropped, message.reply_error(_GONE, reason), False)
        self._free_at[node] = outcome.time
        return outcome

    def _compute_s(
        self, message: Message, reply: Message, measured_s: float | None
    ) -> tuple[Message, float]:
        """The reply and its compute on this machine: per example when the population says so.

        A ``num-examples`` that is not a finite number >= 0 turns the reply into an error.
        """
        per_example = self.population.seconds_per_example
        if per_example is None:
            return reply, measured_s or 0.0
        count = _num_examples(reply)
        if count is None:
            if not reply.has_error:
                self._warn_no_examples(message.metadata.dst_node_id)
            return reply, 0.0
        if not (math.isfinite(count) and count >= 0):
            reason = (
                f"node {message.metadata.dst_node_id} reported {NUM_EXAMPLES} = {count!r}; "
                "the simulated clock needs a finite number >= 0 of examples"
            )
            return message.reply_error(ErrorCode.INVALID_REPLY, reason), 0.0
        return reply, per_example * count

    def _warn_no_examples(self, node: int) -> None:
        """Say once that a reply without ``num-examples`` costs no simulated compute."""
        if not self._warned:
            self._warned = True
            log.warning(
                "node %d's reply has no %r metric, so its task costs no simulated compute "
                "(the population sets seconds_per_example); report %r in the reply's metrics, "
                "whatever the strategy's weight_key",
                node,
                NUM_EXAMPLES,
                NUM_EXAMPLES,
            )


_GONE = ErrorCode.NODE_UNAVAILABLE


def _array_bytes(message: Message) -> int:
    """The bytes of a message's ArrayRecords (an error reply carries none)."""
    if not message.has_content:
        return 0
    return sum(record.nbytes for record in message.content.array_records.values())


def _num_examples(reply: Message) -> float | None:
    """The reply's ``num-examples`` metric (None for an error reply or a reply without one)."""
    if not reply.has_content:
        return None
    for record in reply.content.metric_records.values():
        value = record.get(NUM_EXAMPLES)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None
