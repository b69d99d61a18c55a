"""Grid: the ServerApp's view of the federation, the same for every transport."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence

from ..message import Message

__all__ = ["Grid"]


class Grid(ABC):
    """List nodes, send messages, receive replies: one interface, several transports.

    The contract every transport keeps: each message sent gets exactly one reply from
    ``receive``, the node's own or an error reply (timeout, node unavailable), and replies
    come in the order they arrive.
    """

    @property
    @abstractmethod
    def run_id(self) -> int:
        """The id of the run this grid serves."""

    @abstractmethod
    def node_ids(self) -> list[int]:
        """The ids of the nodes available now."""

    @abstractmethod
    def send(self, messages: Iterable[Message]) -> list[str]:
        """Queue messages for their nodes; returns their message ids, in order."""

    @abstractmethod
    def receive(
        self, message_ids: Sequence[str], timeout: float | None = None
    ) -> Iterator[Message]:
        """Yield one reply per message id as replies arrive; error replies after ``timeout`` s."""

    def send_and_receive(
        self, messages: Iterable[Message], timeout: float | None = None
    ) -> list[Message]:
        """Send messages and wait for all replies (or ``timeout`` seconds): arrival order."""
        return list(self.receive(self.send(messages), timeout))
