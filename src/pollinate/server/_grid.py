"""Grid: the ServerApp's view of the federation, the same for every transport."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Sequence

from ..errors import PollinateError, RoundError
from ..message import ErrorCode, Message
from ._observer import Observers, RunObserver
from ._resume import ResumePoint

__all__ = ["Grid", "check_reply"]


class Grid(ABC):
    """List nodes, send messages, receive replies: one interface, several transports.

    The contract every transport keeps: each message sent gets exactly one reply from
    ``receive``, the node's own or an error reply (timeout, node unavailable), and replies
    come in the order they arrive; ``receive_in_order`` gives the same replies in the order
    their messages were sent. For asynchronous strategies, ``receive_first`` gives the one
    reply that comes first (None after its timeout) and leaves the rest pending, and
    ``abandon`` lets go of messages whose replies are no longer wanted; ``now`` is the
    grid's clock (None: wall time).

    A grid also carries what the run around it gives a round loop: ``observer`` (who hears
    of each round) and ``resume_point`` (where an interrupted run carries on).
    ``run_server_app`` sets both; a bare transport reports to nobody and starts afresh.
    """

    @property
    def observer(self) -> RunObserver:
        """Who hears of the run's progress (the runner's observers, as one)."""
        return _NOBODY

    @property
    def resume_point(self) -> ResumePoint | None:
        """Where an interrupted run carries on, until a round loop has (None: afresh)."""
        return None

    @property
    @abstractmethod
    def run_id(self) -> int:
        """The id of the run this grid serves."""

    @abstractmethod
    def node_ids(self) -> Sequence[int]:
        """The ids of the nodes available now (a simulation answers with a ``range``)."""

    @abstractmethod
    def send(self, messages: Iterable[Message]) -> list[str]:
        """Queue messages for their nodes; returns their message ids, in order."""

    @abstractmethod
    def receive(
        self, message_ids: Sequence[str], timeout_s: float | None = None
    ) -> Iterator[Message]:
        """Yield one reply per message id as replies arrive; error replies after ``timeout_s`` s."""

    def receive_in_order(
        self, message_ids: Sequence[str], timeout_s: float | None = None
    ) -> Iterator[Message]:
        """``receive``'s replies in the order of ``message_ids``, as strategies fold them.

        Folding in a fixed order makes a float aggregate the same bit for bit from run to
        run, however the transport interleaves replies. A transport that knows the order
        may hold fewer replies than ``in_send_order``'s buffer does (the link lets a reply
        in only when it is nearly its turn).
        """
        return in_send_order(self.receive(message_ids, timeout_s), message_ids)

    def now(self) -> float | None:
        """Simulated seconds since the run began (None: a real transport, wall time rules)."""
        return None

    def receive_first(
        self, message_ids: Collection[str], timeout_s: float | None = None
    ) -> Message | None:
        """The reply to whichever of ``message_ids`` is answered first, or None.

        None: none is answered within ``timeout_s`` (on the grid's clock). The rest stay
        pending for later calls: nothing fails and nothing is abandoned on a timeout, the
        caller abandons what it gives up on, so each task can keep its own deadline. Every
        transport of
        pollinate implements it; a grid of one's own that does not cannot run
        asynchronous strategies (FedBuff, FedAsync).
        """
        raise PollinateError(
            f"{type(self).__name__} does not implement receive_first, which asynchronous "
            "strategies (FedBuff, FedAsync) need: run them on a simulation or a link, or "
            "implement receive_first and abandon on this grid"
        )

    def abandon(self, message_ids: Collection[str]) -> None:
        """The ServerApp will not receive these: their replies are dropped when they come."""
        raise PollinateError(
            f"{type(self).__name__} does not implement abandon, which asynchronous strategies "
            "(FedBuff, FedAsync) need: run them on a simulation or a link, or implement "
            "receive_first and abandon on this grid"
        )

    def wait_for_nodes(self, count: int, timeout_s: float) -> Sequence[int]:
        """The available node ids, once at least ``count`` are there.

        Raises ``RoundError`` after ``timeout_s`` seconds; transports whose nodes never change
        answer at once.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = self.node_ids()
            if len(nodes) >= count:
                return nodes
            if time.monotonic() >= deadline:
                raise RoundError(
                    f"only {len(nodes)} of the {count} nodes needed are connected after "
                    f"{timeout_s:g} s"
                )
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def send_and_receive(
        self, messages: Iterable[Message], timeout_s: float | None = None
    ) -> list[Message]:
        """Send messages and wait for all replies (or ``timeout_s`` seconds): arrival order."""
        return list(self.receive(self.send(messages), timeout_s))


_NOBODY = Observers()
"""The observer of a grid outside a run: it hears nothing."""


def check_reply(sent: Message, reply: Message) -> Message:
    """``reply`` if it truly answers ``sent``, else an INVALID_REPLY error reply in its place.

    Every transport runs this on what a node sends back, so a handler that returns the wrong
    message (``Message.create`` instead of ``msg.reply``, or ``msg`` itself) is counted as a
    failure of that node instead of vanishing.
    """
    want, got = sent.metadata, reply.metadata
    problems = [
        f"{field} is {mine!r}, expected {theirs!r}"
        for field, mine, theirs in (
            ("reply_to_message_id", got.reply_to_message_id, want.message_id),
            ("src_node_id", got.src_node_id, want.dst_node_id),
            ("message_type", got.message_type, want.message_type),
        )
        if mine != theirs
    ]
    if not problems:
        return reply
    return sent.reply_error(
        ErrorCode.INVALID_REPLY,
        "the reply does not answer the message (build it with msg.reply(content)): "
        + "; ".join(problems),
    )


def in_send_order(replies: Iterable[Message], message_ids: Sequence[str]) -> Iterator[Message]:
    """Yield ``replies`` ordered as ``message_ids``; a reply to an unknown id is dropped.

    Early arrivals wait in a buffer until every message sent before theirs has been
    answered, so the buffer holds only the replies that overtook a slower one.
    """
    position = {mid: i for i, mid in enumerate(message_ids)}
    waiting: dict[int, Message] = {}
    next_index = 0
    for reply in replies:
        index = position.get(reply.metadata.reply_to_message_id)
        if index is None or index < next_index or index in waiting:
            continue
        waiting[index] = reply
        del reply  # hold no reply while the next one comes in: it may be a whole model
        while next_index in waiting:
            yield waiting.pop(next_index)
            next_index += 1
    for index in sorted(waiting):  # a transport that lost a reply must not lose the rest
        yield waiting[index]
