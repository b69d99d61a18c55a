"""SimulationGrid: a Grid over virtual nodes that cost nothing until they are sampled."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from types import MappingProxyType
from typing import NamedTuple

from ..context import Context, UserConfig
from ..errors import ConfigError, PollinateError, RoundError, WireError
from ..message import SERVER_NODE_ID, Error, ErrorCode, Message
from ..records import RecordDict
from ..server import Grid, check_reply
from ._backend import Backend, Task, TaskResult
from ._clock import Arrival, Clock, Population
from ._states import DEFAULT_MEMORY_BYTES, NodeStates

__all__ = ["NodeConfigFn", "SimulationGrid"]

NodeConfigFn = Callable[[int, int], UserConfig]
"""``(partition_id, num_partitions) -> node_config`` for a virtual node."""


def default_node_config(partition_id: int, num_partitions: int) -> UserConfig:
    """Each virtual node holds one partition of the data."""
    return {"partition-id": partition_id, "num-partitions": num_partitions}


class _Sent(NamedTuple):
    """A message queued for its node: when (simulated) and in which order it was sent."""

    message: Message
    at: float
    order: int


class SimulationGrid(Grid):
    """``num_nodes`` virtual nodes with ids 1..N; node ``i + 1`` holds partition ``i``.

    A node's Context is made when it receives a message, and its ``state`` is kept here
    between rounds, encoded (see ``NodeStates``): a federation of 100,000 nodes costs only
    what is sampled. ``state_memory_bytes`` bounds the encoded states held in memory; the
    oldest beyond it go to a temporary file. ``close()`` forgets them.

    With a ``population`` the grid keeps simulated time (``now()``): tasks still
    run as fast as the backend runs them, and each reply is given the simulated moment it
    arrives, the order of arrival and the failures the population causes. Timeouts are then
    simulated time and the backend gets no wall deadline: a ClientApp that hangs hangs the
    simulation. A clocked receive runs its whole batch before it yields the first reply, and
    the grid holds each reply run but not yet received (``receive_first``'s, say) until it
    is. A node's ``state`` is kept when the node finished its task, even if the server then
    timed it out or abandoned it (the node did the work); a node that dropped out or went
    away mid-task keeps its old state.
    """

    def __init__(
        self,
        backend: Backend,
        num_nodes: int,
        run_id: int,
        run_config: UserConfig,
        node_config_fn: NodeConfigFn = default_node_config,
        state_memory_bytes: int = DEFAULT_MEMORY_BYTES,
        population: Population | None = None,
    ) -> None:
        if population is not None and population.num_nodes != num_nodes:
            raise ConfigError(
                f"the population describes {population.num_nodes:,} nodes and the simulation "
                f"has {num_nodes:,}: build the population for num-nodes"
            )
        self._backend = backend
        self._num_nodes = num_nodes
        self._run_id = run_id
        self._run_config = MappingProxyType(dict(run_config))  # one read-only view for all
        self._node_config_fn = node_config_fn
        self._states = NodeStates(state_memory_bytes)
        self._clock = None if population is None else Clock(population)
        self._pending: dict[str, _Sent] = {}
        self._arrived: dict[str, Arrival] = {}  # run, not yet received
        self._sends = itertools.count()
        self._finishes = itertools.count()  # an unclocked grid's arrival ranks
        self._receiving = False

    @property
    def run_id(self) -> int:
        """The id of the simulated run."""
        return self._run_id

    def now(self) -> float | None:
        """Simulated seconds since the run began (None without a population)."""
        return None if self._clock is None else self._clock.now

    def node_ids(self) -> Sequence[int]:
        """The nodes available now: every one without a population (a ``range``, no list)."""
        if self._clock is None:
            return range(1, self._num_nodes + 1)
        return self._clock.population.available_nodes(self._clock.now)

    def wait_for_nodes(self, count: int, timeout_s: float) -> Sequence[int]:
        """The available nodes once ``count`` are, moving the clock on to that moment.

        Without a population every node is always there: nothing to wait for. On a clock the
        population's gaps (a night without phones) are waited out in simulated time however
        long they are, so ``timeout_s`` (a deployment's wait for nodes to connect) does not
        apply; a population that never has ``count`` nodes at once is a RoundError.
        """
        if count > self._num_nodes:
            raise RoundError(f"the simulation has only {self._num_nodes} nodes (num-nodes)")
        clock = self._clock
        if clock is None:
            return self.node_ids()
        at = clock.population.next_available(clock.now, count)
        if math.isinf(at):
            raise RoundError(
                f"the population never has {count} nodes available at once after "
                f"{clock.now:.6g} s of simulated time: ask for fewer nodes (min_train_nodes, "
                "min_available_nodes) or make the population's availability allow more"
            )
        clock.advance(at)
        return self.node_ids()

    def node_state(self, node_id: int) -> RecordDict | None:
        """A copy of the state a node kept so far (None if it never answered without error)."""
        return self._states.get(node_id)

    def close(self) -> None:
        """Forget every node's state (and delete the file they spilled to, if any)."""
        self._states.close()

    def send(self, messages: Iterable[Message]) -> list[str]:
        """Queue messages; they run when their replies are received."""
        at = 0.0 if self._clock is None else self._clock.now
        ids = []
        for message in messages:
            md = message.metadata
            stamped = (
                message
                if md.run_id == self._run_id and md.src_node_id == SERVER_NODE_ID
                else message.with_metadata(run_id=self._run_id, src_node_id=SERVER_NODE_ID)
            )
            message_id = stamped.metadata.message_id
            self._pending[message_id] = _Sent(stamped, at, next(self._sends))
            ids.append(message_id)
        return ids

    def receive(
        self, message_ids: Sequence[str], timeout_s: float | None = None
    ) -> Iterator[Message]:
        """Run the queued messages on the backend and yield replies as they finish.

        With a population: in simulated arrival order, the clock moving on to each reply as
        it is yielded; a caller that stops early abandons the rest (their nodes stay busy).
        """
        self._check_idle()
        self._receiving = True
        try:
            if self._clock is None:
                yield from self._receive(message_ids, timeout_s)
            else:
                yield from self._receive_clocked(self._clock, message_ids, timeout_s)
        finally:
            self._receiving = False

    def receive_first(
        self, message_ids: Collection[str], timeout_s: float | None = None
    ) -> Message | None:
        """The reply to whichever of ``message_ids`` arrives first; the rest stay pending.

        Those not yet run run now, as one backend batch, and their replies are held for
        later calls. Without a population "first" is the order they finished in (a reply is
        always there; ``timeout_s`` is the batch's wall deadline, as ``receive``'s); with
        one it is simulated time: if none arrives within ``timeout_s``, the clock moves on
        to the end of the wait and None is returned (nothing fails, nothing is abandoned).
        """
        self._check_idle()
        ids = list(message_ids)
        if not ids:
            raise PollinateError("receive_first() needs at least one message id")
        clock = self._clock
        self._run(self._take(ids), timeout_s if clock is None else None)
        first = min((self._arrived[mid] for mid in ids), key=_arrival_key)
        if clock is not None:
            deadline = _deadline(clock, timeout_s)
            if first.time > deadline:
                clock.advance(deadline)
                return None
            clock.advance(first.time)
        del self._arrived[first.message_id]
        return first.reply

    def abandon(self, message_ids: Collection[str]) -> None:
        """Drop these messages' replies; unknown ids are ignored.

        A message not yet run never runs; a node that ran one stays busy until its task ends.
        """
        for message_id in message_ids:
            self._pending.pop(message_id, None)
            self._arrived.pop(message_id, None)

    def _check_idle(self) -> None:
        if self._receiving:
            raise PollinateError(
                "SimulationGrid runs one receive() at a time: finish iterating the first"
            )

    def _take(self, message_ids: Collection[str]) -> list[_Sent]:
        """The queued messages among ``message_ids``, out of the queue; the others must be held.

        Every id is checked before any is taken: a mistake leaves the queue as it was.
        """
        for message_id in message_ids:
            if message_id not in self._pending and message_id not in self._arrived:
                raise PollinateError(
                    f"message {message_id!r} was not sent, or was received already"
                )
        if len(set(message_ids)) != len(message_ids):
            raise PollinateError("a message id is named twice: receive each message once")
        return [self._pending.pop(mid) for mid in message_ids if mid in self._pending]

    def _receive(self, message_ids: Sequence[str], timeout_s: float | None) -> Iterator[Message]:
        """Unclocked: held replies first (they finished earlier), then the batch as it runs."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        sent = self._take(message_ids)
        held = sorted(
            (self._arrived.pop(mid) for mid in message_ids if mid in self._arrived),
            key=_arrival_key,
        )
        for arrival in held:
            yield arrival.reply
        tasks, _, unknown = self._tasks(sent)
        for item in unknown:
            yield _no_such_node(item.message, self._num_nodes)
        for result in self._backend.run(tasks, deadline):
            yield self._checked(tasks[result.index], result)

    def _receive_clocked(
        self, clock: Clock, message_ids: Sequence[str], timeout_s: float | None
    ) -> Iterator[Message]:
        """Clocked: every reply in simulated arrival order, TIMEOUT past the deadline."""
        deadline = _deadline(clock, timeout_s)
        self._run(self._take(message_ids), None)
        arrivals = sorted((self._arrived[mid] for mid in message_ids), key=_arrival_key)
        try:
            for arrival in arrivals:
                del self._arrived[arrival.message_id]
                if timeout_s is not None and arrival.time > deadline:
                    arrival = _timed_out(arrival, deadline, timeout_s)
                clock.advance(arrival.time)
                yield arrival.reply
        finally:  # a caller that stopped early abandons the rest
            self.abandon(message_ids)

    def _run(self, sent: list[_Sent], timeout_s: float | None) -> None:
        """Run ``sent`` as one backend batch and hold each reply, with its arrival, for receipt."""
        if not sent:
            return
        if self._clock is None:
            self._run_unclocked(sent, timeout_s)
        else:
            self._run_clocked(self._clock, sent)

    def _run_unclocked(self, sent: list[_Sent], timeout_s: float | None) -> None:
        """Replies ranked in the order they finish, within a wall deadline of ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        tasks, known, unknown = self._tasks(sent)
        for item in unknown:
            self._hold(item, next(self._finishes), _no_such_node(item.message, self._num_nodes))
        for result in self._backend.run(tasks, deadline):
            reply = self._checked(tasks[result.index], result)
            self._hold(known[result.index], next(self._finishes), reply)

    def _run_clocked(self, clock: Clock, sent: list[_Sent]) -> None:
        """Every task run to its end (no wall deadline), then put on the clock in sending order.

        Sending order, not finishing order, decides each node's queue and task count, so the
        times do not depend on how the backend interleaves.
        """
        tasks, known, unknown = self._tasks(sorted(sent, key=lambda item: item.order))
        for item in unknown:
            self._hold(item, item.at, _no_such_node(item.message, self._num_nodes))
        for result in sorted(self._backend.run(tasks, None), key=lambda r: r.index):
            task, item = tasks[result.index], known[result.index]
            reply = check_reply(task.message, result.reply)
            outcome = clock.schedule(task.message, reply, result.compute_s, item.at)
            reply = outcome.reply
            if outcome.completed and result.state is not None and reply is result.reply:
                reply = self._keep_state(task, result.state, reply)
            self._hold(item, outcome.time, reply)

    def _hold(self, sent: _Sent, at: float, reply: Message) -> None:
        message_id = sent.message.metadata.message_id
        self._arrived[message_id] = Arrival(message_id, at, sent.order, reply)

    def _tasks(self, sent: Sequence[_Sent]) -> tuple[list[Task], list[_Sent], list[_Sent]]:
        """The tasks of ``sent``, the messages they run, and the messages to no such node."""
        tasks: list[Task] = []
        known: list[_Sent] = []
        unknown: list[_Sent] = []
        batch_states: dict[int, RecordDict] = {}  # one node's tasks in a batch share its state
        for item in sent:
            node_id = item.message.metadata.dst_node_id
            if not 1 <= node_id <= self._num_nodes:
                unknown.append(item)
                continue
            tasks.append(Task(item.message, self._context(node_id, batch_states)))
            known.append(item)
        return tasks, known, unknown

    def _checked(self, task: Task, result: TaskResult) -> Message:
        """The node's reply, checked, its state kept (an unclocked grid's every finished task)."""
        reply = check_reply(task.message, result.reply)
        if result.state is not None and reply is result.reply:
            reply = self._keep_state(task, result.state, reply)
        return reply

    def _keep_state(self, task: Task, state: RecordDict, reply: Message) -> Message:
        """Keep the node's state; a state the wire format cannot encode fails the node."""
        try:
            self._states.put(task.context.node_id, state)
        except WireError as err:
            return task.message.reply_error(
                ErrorCode.INVALID_REPLY,
                f"node {task.context.node_id}'s context.state cannot be kept: {err}",
            )
        return reply

    def _context(self, node_id: int, batch_states: dict[int, RecordDict]) -> Context:
        state = batch_states.get(node_id)
        if state is None:
            state = batch_states[node_id] = self._states.get(node_id) or RecordDict()
        node_config = MappingProxyType(dict(self._node_config_fn(node_id - 1, self._num_nodes)))
        return Context(self._run_id, node_id, node_config, self._run_config, state)


def _no_such_node(message: Message, num_nodes: int) -> Message:
    node_id = message.metadata.dst_node_id
    return message.reply_error(
        ErrorCode.NODE_UNAVAILABLE,
        f"no node {node_id} in this simulation (nodes are 1..{num_nodes})",
    )


def _arrival_key(arrival: Arrival) -> tuple[float, int]:
    return arrival.time, arrival.order


def _deadline(clock: Clock, timeout_s: float | None) -> float:
    """When a receive that starts now times out, in simulated seconds (``inf``: never)."""
    return math.inf if timeout_s is None else clock.now + timeout_s


def _timed_out(arrival: Arrival, deadline: float, timeout_s: float) -> Arrival:
    """``arrival`` replaced by a TIMEOUT reply at ``deadline`` (it had not come by then)."""
    reply = arrival.reply
    reason = (
        f"node {reply.metadata.src_node_id} did not answer {reply.metadata.message_type!r} "
        f"within the timeout of {timeout_s:g} s of simulated time"
    )
    error = Message(reply.metadata, error=Error(ErrorCode.TIMEOUT, reason))
    return Arrival(arrival.message_id, deadline, arrival.order, error)
