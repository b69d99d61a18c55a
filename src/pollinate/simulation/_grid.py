"""SimulationGrid: a Grid over virtual nodes that cost nothing until they are sampled."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import MappingProxyType

from ..context import Context, UserConfig
from ..errors import PollinateError, RoundError, WireError
from ..message import SERVER_NODE_ID, ErrorCode, Message
from ..records import RecordDict
from ..server import Grid, check_reply
from ._backend import Backend, Task
from ._states import DEFAULT_MEMORY_BYTES, NodeStates

__all__ = ["NodeConfigFn", "SimulationGrid"]

NodeConfigFn = Callable[[int, int], UserConfig]
"""``(partition_id, num_partitions) -> node_config`` for a virtual node."""


def default_node_config(partition_id: int, num_partitions: int) -> UserConfig:
    """Each virtual node holds one partition of the data."""
    return {"partition-id": partition_id, "num-partitions": num_partitions}


class SimulationGrid(Grid):
    """``num_nodes`` virtual nodes with ids 1..N; node ``i + 1`` holds partition ``i``.

    A node's Context is made when it receives a message, and its ``state`` is kept here
    between rounds, encoded (see ``NodeStates``): a federation of 100,000 nodes costs only
    what is sampled. ``state_memory_bytes`` bounds the encoded states held in memory; the
    oldest beyond it go to a temporary file. ``close()`` forgets them.
    """

    def __init__(
        self,
        backend: Backend,
        num_nodes: int,
        run_id: int,
        run_config: UserConfig,
        node_config_fn: NodeConfigFn = default_node_config,
        state_memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        self._backend = backend
        self._num_nodes = num_nodes
        self._run_id = run_id
        self._run_config = MappingProxyType(dict(run_config))  # one read-only view for all
        self._node_config_fn = node_config_fn
        self._states = NodeStates(state_memory_bytes)
        self._pending: dict[str, Message] = {}
        self._receiving = False

    @property
    def run_id(self) -> int:
        """The id of the simulated run."""
        return self._run_id

    def node_ids(self) -> range:
        """Every virtual node: they are always available (a range: no list of N ids is made)."""
        return range(1, self._num_nodes + 1)

    def wait_for_nodes(self, count: int, timeout_s: float) -> range:
        """Every node, at once: virtual nodes never come or go, so there is nothing to wait for."""
        if count > self._num_nodes:
            raise RoundError(f"the simulation has only {self._num_nodes} nodes (num-nodes)")
        return self.node_ids()

    def node_state(self, node_id: int) -> RecordDict | None:
        """A copy of the state a node kept so far (None if it never answered without error)."""
        return self._states.get(node_id)

    def close(self) -> None:
        """Forget every node's state (and delete the file they spilled to, if any)."""
        self._states.close()

    def send(self, messages: Iterable[Message]) -> list[str]:
        """Queue messages; they run when their replies are received."""
        ids = []
        for message in messages:
            md = message.metadata
            stamped = (
                message
                if md.run_id == self._run_id and md.src_node_id == SERVER_NODE_ID
                else message.with_metadata(run_id=self._run_id, src_node_id=SERVER_NODE_ID)
            )
            self._pending[stamped.metadata.message_id] = stamped
            ids.append(stamped.metadata.message_id)
        return ids

    def receive(
        self, message_ids: Sequence[str], timeout_s: float | None = None
    ) -> Iterator[Message]:
        """Run the queued messages on the backend and yield replies as they finish."""
        if self._receiving:
            raise PollinateError(
                "SimulationGrid runs one receive() at a time: finish iterating the first"
            )
        self._receiving = True
        try:
            yield from self._receive(message_ids, timeout_s)
        finally:
            self._receiving = False

    def _receive(self, message_ids: Sequence[str], timeout_s: float | None) -> Iterator[Message]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        tasks: list[Task] = []
        batch_states: dict[int, RecordDict] = {}  # one node's tasks in a batch share its state
        for message_id in message_ids:
            message = self._pending.pop(message_id, None)
            if message is None:
                raise PollinateError(
                    f"message {message_id!r} was not sent, or was received already"
                )
            node_id = message.metadata.dst_node_id
            if not 1 <= node_id <= self._num_nodes:
                yield message.reply_error(
                    ErrorCode.NODE_UNAVAILABLE,
                    f"no node {node_id} in this simulation (nodes are 1..{self._num_nodes})",
                )
                continue
            tasks.append(Task(message, self._context(node_id, batch_states)))
        for result in self._backend.run(tasks, deadline):
            task = tasks[result.index]
            reply = check_reply(task.message, result.reply)
            if result.state is not None and reply is result.reply:
                reply = self._keep_state(task, result.state, reply)
            yield reply

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
