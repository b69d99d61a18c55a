"""LinkGrid: the ServerApp's Grid over the nodes connected to a link."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..context import UserConfigValue
from ..errors import ConfigError, PollinateError, RunStopped
from ..message import SERVER_NODE_ID, ErrorCode, Message
from ..server import Grid, check_reply
from ..wire import encode_parts
from ._frames import MAX_HEADER_SIZE

if TYPE_CHECKING:
    from ._nodestats import NodeStats
    from ._store import AppRef

__all__ = ["LinkGrid", "QuotaExceeded", "ReplyLimits", "Transport"]

log = logging.getLogger("pollinate.link")


class QuotaExceeded(PollinateError):
    """A node's reply would hold more bytes on the link than its quotas allow."""


class Transport(Protocol):
    """What a LinkGrid needs of its link: which nodes are there, and a way to reach one."""

    def connected_nodes(self) -> list[int]:
        """The ids of the nodes with a live stream."""
        ...

    def push(
        self, node_id: int, message_id: str, parts: list[bytes | memoryview], header: dict[str, Any]
    ) -> bool:
        """Queue a message for a node; False if the node is not connected."""
        ...


@dataclass(frozen=True, slots=True)
class ReplyLimits:
    """How much of the nodes' replies the link holds at once (``Link`` documents them)."""

    max_open: int
    """Replies in the window of the send order that may come in: unfolded ones count."""
    node_bytes: int
    """Bytes of one node's unfolded replies."""
    total_bytes: int
    """Bytes of all nodes' unfolded replies."""


class LinkGrid(Grid):
    """The ServerApp's Grid over the nodes connected to a link.

    ``send`` pushes each message to its node at once; ``receive`` yields replies as they
    arrive, ``receive_in_order`` in the order sent, ``receive_first`` the first of a set
    (asynchronous strategies; None after its timeout), leaving the rest pending. Each
    message gets exactly one reply: the node's, or an error reply when the node is lost
    (NODE_UNAVAILABLE) or a ``receive``'s timeout passes (TIMEOUT); a late reply is dropped.
    ``app`` tells nodes which submitted app's code answers (None: their own). After
    ``stop`` every call raises RunStopped, so the ServerApp ends at its next message.
    ``stats`` counts each node's tasks and how each ended (``Link.node_status``).
    """

    def __init__(
        self,
        link: Transport,
        run_id: int,
        run_config: dict[str, UserConfigValue],
        app: AppRef | None = None,
        name: str | None = None,
        stats: NodeStats | None = None,
    ) -> None:
        self._link = link
        self._stats = stats
        self._run_id = run_id
        size = len(json.dumps(run_config))
        if size > MAX_HEADER_SIZE // 2:
            raise ConfigError(
                f"the run config is {size:,} bytes as JSON; it travels with every message and "
                f"must stay under {MAX_HEADER_SIZE // 2:,}: pass large data another way"
            )
        self._header: dict[str, object] = {"run_config": run_config}
        if app is not None:
            self._header |= {"app": app.to_json(), "name": name}
        self._lock = threading.Lock()
        self._turn = threading.Condition(self._lock)
        """Notified whenever a message stops waiting: the next replies may be received."""
        self._waiting: dict[str, Message] = {}
        """Messages without a reply yet."""
        self._unfinished: dict[str, None] = {}
        """Messages whose replies the ServerApp is not done with, in the order sent: not yet
        answered, waiting in ``receive_in_order`` for an earlier one, or being folded."""
        self._in_flight: dict[str, tuple[int, int]] = {}
        """Replies let in and not yet folded: message id -> (node id, bytes announced)."""
        self._at_the_door: set[str] = set()
        """Messages whose replies have begun to arrive and wait for their turn."""
        self._unordered: set[str] = set()
        """Messages awaited through ``receive_first``: their replies need no send-order turn."""
        self._handed: str | None = None
        """The message whose reply ``receive_first`` returned last: the ServerApp holds it
        until its next call."""
        self._replies: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._stopped: str | None = None

    @property
    def run_id(self) -> int:
        """The id of the run."""
        return self._run_id

    def node_ids(self) -> list[int]:
        """The nodes connected now."""
        self._check_stopped()
        return self._link.connected_nodes()

    def stop(self, reason: str) -> None:
        """End the run: the ServerApp's next (or current) call raises RunStopped."""
        self._stopped = reason
        self._replies.put(None)  # wakes a waiting receive()
        with self._turn:
            self._turn.notify_all()

    def let_in(
        self,
        node_id: int,
        reply_to: str,
        size: int,
        limits: ReplyLimits,
        keep_alive: Callable[[], None],
        period_s: float,
    ) -> bool:
        """Whether a reply of ``size`` bytes that begins to arrive may come in, in its turn.

        False (logged) if no message waits for it from ``node_id``: its chunks are dropped
        unread. Strategies fold replies in the order their messages were sent, so the link
        takes in replies in that order too: a reply comes in once fewer than
        ``limits.max_open`` messages sent before it are unfolded (unanswered, or answered
        and waiting in ``receive_in_order`` for an earlier one, or being folded). A later
        reply waits here (gRPC's flow control holds its node back) instead of sitting whole
        in memory. ``keep_alive`` runs every ``period_s`` meanwhile: the node is alive, the
        link just is not reading it yet. A reply waiting for its turn has come in time:
        ``receive``'s timeout does not fail it (it fails the ones it waits behind). A reply
        over the byte quotas fails its message at once (INVALID_REPLY) and raises
        QuotaExceeded.

        A reply awaited through ``receive_first`` has no turn to wait for (an asynchronous
        strategy takes whichever comes first): it comes in once fewer than
        ``limits.max_open`` replies are let in and not yet done with, and messages awaited
        so are not counted ahead of the others.
        """
        with self._turn:
            if not self._awaited(node_id, reply_to):
                return False
            self._at_the_door.add(reply_to)
            try:
                while (
                    self._stopped is None
                    and reply_to in self._waiting
                    and not self._its_turn(reply_to, limits.max_open)
                ):
                    self._turn.wait(period_s)
                    keep_alive()
            finally:
                self._at_the_door.discard(reply_to)
            if self._stopped is not None or reply_to not in self._waiting:
                return False  # failed meanwhile (lost, stopped): nothing wants it now
            over = self._over_quota(node_id, size, limits)
            if over is None:
                self._in_flight[reply_to] = (node_id, size)
                return True
        self._fail(reply_to, ErrorCode.INVALID_REPLY, over)
        raise QuotaExceeded(over)

    def waits_for(self, message_id: str) -> bool:
        """Whether ``message_id`` still waits for its reply."""
        with self._lock:
            return message_id in self._waiting

    def _awaited(self, node_id: int, reply_to: str) -> bool:
        """Whether a message waits for a reply to ``reply_to`` from ``node_id`` (else log)."""
        sent = self._waiting.get(reply_to)
        if sent is None:
            log.warning(
                "dropped a reply from node %d to %r: no message waits for it (late or unknown)",
                node_id,
                reply_to,
            )
            return False
        if sent.metadata.dst_node_id != node_id:
            log.warning(
                "dropped a reply from node %d to a message sent to node %d",
                node_id,
                sent.metadata.dst_node_id,
            )
            return False
        return True

    def _its_turn(self, reply_to: str, max_open: int) -> bool:
        """Whether ``reply_to``'s reply may come in now, within the window of ``max_open``.

        One awaited through ``receive_first``: fewer than ``max_open`` replies are let in
        and not done with. Any other: fewer than ``max_open`` unfolded messages that are
        received in order were sent before it.
        """
        if reply_to in self._unordered:
            return len(self._in_flight) < max_open
        ahead = 0
        for message_id in self._unfinished:
            if ahead >= max_open:
                return False
            if message_id == reply_to:
                return True
            if message_id not in self._unordered:
                ahead += 1
        return True

    def _over_quota(self, node_id: int, size: int, limits: ReplyLimits) -> str | None:
        """Why a reply of ``size`` bytes from ``node_id`` may not come in now, if it may not."""
        total = size + sum(b for _, b in self._in_flight.values())
        node = size + sum(b for n, b in self._in_flight.values() if n == node_id)
        if node > limits.node_bytes:
            return (
                f"node {node_id}'s reply of {size:,} bytes would bring its replies on the link "
                f"to {node:,} bytes, over the quota of {limits.node_bytes:,} bytes per node "
                "(max_node_bytes_in_flight; pollinate link --max-node-bytes-in-flight)"
            )
        if total > limits.total_bytes:
            return (
                f"node {node_id}'s reply of {size:,} bytes would bring the replies on the link "
                f"to {total:,} bytes, over the quota of {limits.total_bytes:,} bytes for all "
                "nodes (max_bytes_in_flight; pollinate link --max-bytes-in-flight)"
            )
        return None

    def _finished(self, message_id: str) -> None:
        """The ServerApp is done with the reply to ``message_id``: a later one may come in."""
        with self._turn:
            if self._unfinished.pop(message_id, False) is None:
                self._in_flight.pop(message_id, None)
                self._unordered.discard(message_id)
                self._turn.notify_all()

    def _check_stopped(self) -> None:
        if self._stopped is not None:
            raise RunStopped(f"run {self._run_id}: {self._stopped}")

    def send(self, messages: Iterable[Message]) -> list[str]:
        """Push each message to its node now; a node that is not connected answers with an error."""
        self._check_stopped()
        ids = []
        for message in messages:
            message = message.with_metadata(run_id=self._run_id, src_node_id=SERVER_NODE_ID)
            message_id = message.metadata.message_id
            with self._lock:
                self._waiting[message_id] = message
                self._unfinished[message_id] = None
            if self._stats is not None:
                self._stats.sent(message.metadata.dst_node_id)
            if not self._link.push(
                message.metadata.dst_node_id, message_id, encode_parts(message), self._header
            ):
                self._fail(message_id, ErrorCode.NODE_UNAVAILABLE, "the node is not connected")
            ids.append(message_id)
        return ids

    def receive(
        self, message_ids: Sequence[str], timeout_s: float | None = None
    ) -> Iterator[Message]:
        """Yield one reply per message id as replies arrive; error replies after ``timeout_s``.

        A reply counts against the link's window until the ServerApp asks for the next one.
        """
        for reply in self._arrivals(message_ids, timeout_s):
            yield from self._hand_over(reply)
            del reply  # the ServerApp is done with it: a whole model need not stay here

    def receive_in_order(
        self, message_ids: Sequence[str], timeout_s: float | None = None
    ) -> Iterator[Message]:
        """The replies in the order of ``message_ids``, as strategies fold them.

        A reply that overtook a slower one waits here, and counts against the link's window
        until it is yielded and the ServerApp asks for the next: with a slow node first in
        the send order, the link holds at most ``max_open`` replies, not one per node.
        """
        position = {message_id: i for i, message_id in enumerate(message_ids)}
        early: dict[int, Message] = {}
        next_index = 0
        try:
            for reply in self._arrivals(message_ids, timeout_s):
                early[position[reply.metadata.reply_to_message_id]] = reply
                del reply  # hold no reply while the next one comes in: it may be a whole model
                while next_index in early:
                    yield from self._hand_over(early.pop(next_index))
                    next_index += 1
        finally:
            for reply in early.values():  # the ServerApp stopped early: nobody needs these
                self._finished(reply.metadata.reply_to_message_id)

    def _hand_over(self, reply: Message) -> Iterator[Message]:
        """Yield ``reply``; once the ServerApp asks for the next one, it is done with it."""
        reply_to = reply.metadata.reply_to_message_id
        try:
            yield reply
        finally:
            self._finished(reply_to)

    def receive_first(
        self, message_ids: Collection[str], timeout_s: float | None = None
    ) -> Message | None:
        """The reply to whichever of ``message_ids`` is answered first; the rest stay pending.

        Their replies come in without waiting for a send-order turn (``let_in``). The reply
        returned counts against the link's window until the ServerApp's next grid call of
        this kind (``receive_first``, ``abandon``). None: none answered within ``timeout_s``
        (nothing fails, nothing is abandoned: the caller abandons what it gives up on).
        """
        self._release_handed()
        wanted = self._known(message_ids)
        if not wanted:
            raise PollinateError("receive_first needs at least one message id")
        with self._turn:
            self._unordered.update(wanted)
            self._turn.notify_all()  # a reply at the door may come in now
        reply = self._first(wanted, _Deadline(timeout_s))
        if reply is not None:
            self._handed = reply.metadata.reply_to_message_id
        return reply

    def abandon(self, message_ids: Collection[str]) -> None:
        """The ServerApp will not receive these: their replies are dropped when they come."""
        self._release_handed()
        self._abandon(set(message_ids))

    def _release_handed(self) -> None:
        """The ServerApp is done with the reply ``receive_first`` returned last."""
        if self._handed is not None:
            self._finished(self._handed)
            self._handed = None

    def _known(self, message_ids: Iterable[str]) -> set[str]:
        """``message_ids`` as a set, if every one still awaits its reply here (else raise)."""
        wanted = set(message_ids)
        with self._lock:
            unknown = sorted(wanted.difference(self._unfinished))
        if unknown:
            raise PollinateError(
                f"no reply will come for {unknown[:3]}: they were not sent on this grid, or "
                "were received already"
            )
        return wanted

    def _arrivals(self, message_ids: Sequence[str], timeout_s: float | None) -> Iterator[Message]:
        """One reply per message id as they arrive: the node's, or an error reply."""
        self._release_handed()
        wanted = self._known(message_ids)
        deadline = _Deadline(timeout_s)
        try:
            while wanted:
                reply = self._take(wanted, deadline)
                wanted.discard(reply.metadata.reply_to_message_id)
                yield reply
                del reply
        finally:
            self._abandon(wanted)

    def _take(self, wanted: set[str], deadline: _Deadline) -> Message:
        """The next reply to one of ``wanted``: the node's, or an error reply after the deadline."""
        held: list[Message] = []
        try:
            while True:
                self._check_stopped()
                if deadline.due():
                    at_the_door_too = deadline.expire()
                    self._time_out(
                        wanted, deadline.timeout_s or 0.0, at_the_door_too=at_the_door_too
                    )
                reply = self._poll(wanted, deadline, held)
                if reply is not None:
                    return reply
        finally:
            for reply in held:
                self._replies.put(reply)

    def _first(self, wanted: set[str], deadline: _Deadline) -> Message | None:
        """The next reply to one of ``wanted``, or None once the deadline has passed."""
        held: list[Message] = []
        try:
            while True:
                self._check_stopped()
                reply = self._poll(wanted, deadline, held)
                if reply is not None or deadline.due():
                    return reply
        finally:
            for reply in held:
                self._replies.put(reply)

    def _poll(self, wanted: set[str], deadline: _Deadline, held: list[Message]) -> Message | None:
        """A reply to one of ``wanted`` that comes before the deadline (None: none did).

        Replies that another receive waits for go to ``held``; those to abandoned messages
        are dropped.
        """
        try:
            reply = self._replies.get(timeout=deadline.wait())
        except queue.Empty:
            if deadline.timeout_s is not None and not self._any_waiting(wanted):
                raise PollinateError(
                    f"no reply will come for {sorted(wanted)}: they were not sent on "
                    "this grid, or were received already"
                ) from None
            return None
        if reply is None:
            self._replies.put(None)  # every receive() sees that the run stopped
            return None
        if reply.metadata.reply_to_message_id in wanted:
            return reply
        if reply.metadata.reply_to_message_id in self._unfinished:
            held.append(reply)  # another receive() waits for it
        # else: its message was abandoned (its receive stopped early): dropped
        return None

    def _time_out(self, wanted: set[str], timeout_s: float, *, at_the_door_too: bool) -> None:
        """Fail the wanted messages still without a reply after ``timeout_s``.

        A reply that has begun to arrive waits for its turn and is spared, the first time:
        the silent messages ahead of it fail now, so its turn comes. If its turn still has
        not come a moment later (messages ahead of it that nobody receives), it fails too,
        so ``receive`` always ends.
        """
        with self._lock:
            late = sorted(wanted if at_the_door_too else wanted - self._at_the_door)
            door = set(self._at_the_door)
        for message_id in late:
            why = f"no reply within {timeout_s:g} s"
            if message_id in door:
                why += ": its turn never came (messages sent before it were not received)"
            self._fail(message_id, ErrorCode.TIMEOUT, why)

    def _abandon(self, message_ids: set[str]) -> None:
        """The ServerApp stopped receiving these: their replies are dropped when they come."""
        if not message_ids:
            return
        with self._turn:
            unanswered = [self._waiting.pop(m, None) for m in message_ids]
            for message_id in message_ids:
                self._unfinished.pop(message_id, None)
                self._in_flight.pop(message_id, None)
                self._unordered.discard(message_id)
            self._turn.notify_all()
        for message in unanswered:
            if message is not None:
                why = "abandoned: the run stopped waiting for its reply"
                self._count_failure(message.metadata.dst_node_id, why, lost=True)

    def _any_waiting(self, message_ids: set[str]) -> bool:
        with self._lock:
            return any(message_id in self._waiting for message_id in message_ids)

    def take_reply(self, node_id: int, reply_to: str, reply: Message) -> bool:
        """Accept ``node_id``'s reply to ``reply_to`` if that message waits for it from that node.

        ``reply_to`` is what the frames said the reply answers; a reply whose own metadata
        does not answer that message becomes an INVALID_REPLY error (``check_reply``) at
        once, as in simulation.
        """
        sent = self._claim(node_id, reply_to)
        if sent is None:
            return False
        reply = check_reply(sent, reply)
        if reply.error is not None:
            self._count_failure(node_id, _reason(reply.error.code, reply.error.reason))
        elif self._stats is not None:
            self._stats.done(node_id)
        self._replies.put(reply)
        return True

    def refuse_reply(self, node_id: int, reply_to: str, reason: str) -> None:
        """``node_id`` answered ``reply_to`` with bytes that are no message: INVALID_REPLY."""
        sent = self._claim(node_id, reply_to)
        if sent is not None:
            self._count_failure(node_id, _reason(ErrorCode.INVALID_REPLY, reason))
            self._replies.put(sent.reply_error(ErrorCode.INVALID_REPLY, reason))

    def _claim(self, node_id: int, reply_to: str) -> Message | None:
        """The message ``reply_to`` if it waits for a reply from ``node_id``; it waits no more."""
        with self._lock:
            if not self._awaited(node_id, reply_to):
                return None
            return self._waiting.pop(reply_to)

    def node_lost(self, node_id: int, why: str) -> None:
        """Answer every message still waiting on ``node_id`` with NODE_UNAVAILABLE."""
        with self._lock:
            lost = [m for m in self._waiting.values() if m.metadata.dst_node_id == node_id]
        for message in lost:
            self._fail(
                message.metadata.message_id,
                ErrorCode.NODE_UNAVAILABLE,
                f"node {node_id} was lost: {why}",
            )

    def _fail(self, message_id: str, code: ErrorCode, reason: str) -> None:
        with self._lock:
            sent = self._waiting.pop(message_id, None)
            self._turn.notify_all()  # a reply that waits for its turn need not come any more
        if sent is not None:
            lost = code in (ErrorCode.NODE_UNAVAILABLE, ErrorCode.TIMEOUT)
            self._count_failure(sent.metadata.dst_node_id, _reason(code, reason), lost=lost)
            self._replies.put(sent.reply_error(code, reason))

    def _count_failure(self, node_id: int, reason: str, *, lost: bool = False) -> None:
        if self._stats is not None:
            self._stats.failed(node_id, self._run_id, reason, lost=lost)


def _reason(code: int, reason: str) -> str:
    """A failure's reason as the node table shows it: the error's code, then its text."""
    try:
        name = ErrorCode(code).name.lower().replace("_", " ")
    except ValueError:
        name = f"error {code}"
    return f"{name}: {reason}"


class _Deadline:
    """When a receive's wanted messages time out, on the wall clock.

    Once due, it moves a second on: the error replies are queued by then, and a reply that
    was spared at the door gets that second to come in.
    """

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self._at = None if timeout_s is None else time.monotonic() + timeout_s
        self._expired = 0

    def due(self) -> bool:
        """Whether the deadline has passed."""
        return self._at is not None and time.monotonic() >= self._at

    def expire(self) -> bool:
        """Move the deadline a second on; True from the second time (fail those at the door)."""
        self._expired += 1
        self._at = time.monotonic() + 1.0
        return self._expired > 1

    def wait(self) -> float | None:
        """How long to wait for the next reply (None: for ever)."""
        return None if self._at is None else max(0.0, self._at - time.monotonic())
