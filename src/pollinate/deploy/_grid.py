"""LinkGrid: the ServerApp's Grid over the nodes connected to a link."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..context import UserConfigValue
from ..errors import ConfigError, PollinateError, RunStopped
from ..message import SERVER_NODE_ID, ErrorCode, Message
from ..server import Grid, check_reply
from ..wire import encode_parts
from ._frames import MAX_HEADER_SIZE

if TYPE_CHECKING:
    from ._link import Link
    from ._store import AppRef

__all__ = ["LinkGrid"]

log = logging.getLogger("pollinate.link")


class LinkGrid(Grid):
    """The ServerApp's Grid over the nodes connected to a link.

    ``send`` pushes each message to its node at once; ``receive`` yields replies as they
    arrive. Each message gets exactly one reply: the node's, or an error reply when the node
    is lost (NODE_UNAVAILABLE) or the timeout passes (TIMEOUT); a late reply is dropped.
    ``app`` tells nodes which submitted app's code answers (None: their own). After
    ``stop`` every call raises RunStopped, so the ServerApp ends at its next message.
    """

    def __init__(
        self,
        link: Link,
        run_id: int,
        run_config: dict[str, UserConfigValue],
        app: AppRef | None = None,
        name: str | None = None,
    ) -> None:
        self._link = link
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
        """Messages whose replies the ServerApp has not yet taken up, in the order sent."""
        self._at_the_door: set[str] = set()
        """Messages whose replies have begun to arrive and wait for their turn."""
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

    def wait_for_turn(
        self, reply_to: str, max_open: int, keep_alive: Callable[[], None], period_s: float
    ) -> None:
        """Return once the reply to ``reply_to`` may come in: bounded memory, in send order.

        Strategies fold replies in the order their messages were sent, so the link takes in
        replies in that order too. A reply may come in while fewer than ``max_open``
        messages sent before it are unfinished: not yet answered, or answered but not yet
        taken up by the ServerApp (a reply counts until ``receive`` is asked for the next
        one). A later reply waits (gRPC's flow control holds its node back) instead of
        sitting whole in memory. ``keep_alive`` runs every ``period_s`` meanwhile: the node
        is alive, the link just is not reading it yet. A reply waiting for its turn has come
        in time: ``receive``'s timeout does not fail it (it fails the ones it waits behind).
        """
        with self._turn:
            self._at_the_door.add(reply_to)
            try:
                while self._stopped is None and reply_to in self._waiting:
                    ahead = 0
                    for message_id in self._unfinished:
                        if message_id == reply_to or ahead >= max_open:
                            break
                        ahead += 1
                    if ahead < max_open:
                        return
                    self._turn.wait(period_s)
                    keep_alive()
            finally:
                self._at_the_door.discard(reply_to)

    def _finished(self, message_id: str) -> None:
        """The ServerApp took up the reply to ``message_id``: a later reply may come in."""
        with self._turn:
            if self._unfinished.pop(message_id, False) is None:
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
            if not self._link.push(
                message.metadata.dst_node_id, message_id, encode_parts(message), self._header
            ):
                self._fail(message_id, ErrorCode.NODE_UNAVAILABLE, "the node is not connected")
            ids.append(message_id)
        return ids

    def receive(
        self, message_ids: Sequence[str], timeout: float | None = None
    ) -> Iterator[Message]:
        """Yield one reply per message id as replies arrive; error replies after ``timeout``."""
        wanted = set(message_ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        held: list[Message] = []
        taken = ""
        try:
            while wanted:
                if taken:  # asked for the next reply: the last one is taken up
                    self._finished(taken)
                    taken = ""
                self._check_stopped()
                if deadline is not None and time.monotonic() >= deadline:
                    with self._lock:
                        late = sorted(wanted - self._at_the_door)
                    for message_id in late:
                        self._fail(message_id, ErrorCode.TIMEOUT, f"no reply within {timeout:g} s")
                    deadline = time.monotonic() + 1.0  # the error replies are queued by now
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    reply = self._replies.get(timeout=wait)
                except queue.Empty:
                    if deadline is not None and not self._any_waiting(wanted):
                        raise PollinateError(
                            f"no reply will come for {sorted(wanted)}: they were not sent on "
                            "this grid, or were received already"
                        ) from None
                    continue
                if reply is None:
                    self._replies.put(None)  # every receive() sees that the run stopped
                    continue
                reply_to = reply.metadata.reply_to_message_id
                if reply_to in wanted:
                    wanted.discard(reply_to)
                    taken = reply_to
                    yield reply
                    del reply  # the ServerApp has it: a whole model need not stay here
                else:
                    held.append(reply)  # another receive() waits for it
        finally:
            if taken:
                self._finished(taken)
            for reply in held:
                self._replies.put(reply)

    def _any_waiting(self, message_ids: set[str]) -> bool:
        with self._lock:
            return any(message_id in self._waiting for message_id in message_ids)

    def take_reply(self, node_id: int, reply: Message) -> bool:
        """Accept a node's reply if a message waits for it from that very node."""
        reply_to = reply.metadata.reply_to_message_id
        with self._lock:
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
            del self._waiting[reply_to]
        self._replies.put(check_reply(sent, reply))
        return True

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
            self._replies.put(sent.reply_error(code, reason))
