"""Message: what travels between the server and the nodes.

A message is metadata (who, to whom, what kind, in answer to what) plus either content (a
``RecordDict``) or an ``Error``. Servers create messages with ``Message.create``; nodes
answer with ``message.reply(content)`` or ``message.reply_error(code, reason)``, so a reply
always points back at the message it answers.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from enum import IntEnum

from .errors import RecordError
from .records import RecordDict

__all__ = [
    "DEFAULT_TTL",
    "Error",
    "ErrorCode",
    "Message",
    "MessageType",
    "Metadata",
    "SERVER_NODE_ID",
]

DEFAULT_TTL = 12 * 3600.0
SERVER_NODE_ID = 0


class MessageType:
    """The built-in message types; ``"train.finetune"`` names a variant of ``"train"``."""

    TRAIN = "train"
    EVALUATE = "evaluate"
    QUERY = "query"
    ALL = (TRAIN, EVALUATE, QUERY)

    @staticmethod
    def split(message_type: str) -> tuple[str, str]:
        """Split ``"train.finetune"`` into ``("train", "finetune")``; the default name is ""."""
        kind, _, name = message_type.partition(".")
        return kind, name


class ErrorCode(IntEnum):
    """Why a message came back as an error instead of content."""

    UNKNOWN = 0
    CLIENT_APP_RAISED = 1
    NO_HANDLER = 2
    TIMEOUT = 3
    NODE_UNAVAILABLE = 4
    INVALID_REPLY = 5
    PROTOCOL_REFUSED = 6
    """A protocol mod (SecAgg+'s) refused the message: replayed, altered, or unsafe."""


@dataclass(frozen=True, slots=True)
class Error:
    """An error in place of content: a code and a reason a person can read."""

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Metadata:
    """Where a message comes from, where it goes, and what it answers."""

    run_id: int
    message_id: str
    src_node_id: int
    dst_node_id: int
    message_type: str
    reply_to_message_id: str = ""
    group_id: str = ""
    ttl_s: float = DEFAULT_TTL
    created_at: float = 0.0


def _new_message_id() -> str:
    return os.urandom(16).hex()  # 128 random bits, as uuid4, at a fifth of the cost


@dataclass(frozen=True, slots=True)
class Message:
    """Metadata plus content, or an error in place of content.

    ``content`` is always a RecordDict (empty on an error message), so handlers can use it
    without checking for None; ``has_error`` tells the two kinds apart.
    """

    metadata: Metadata
    content: RecordDict = field(default_factory=RecordDict)
    error: Error | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.content, RecordDict):
            raise RecordError(
                f"Message content must be a RecordDict, got {type(self.content).__name__}"
            )
        if self.error is not None and len(self.content):
            raise RecordError("a Message holds content or an error, not both")

    @classmethod
    def create(
        cls,
        content: RecordDict,
        dst_node_id: int,
        message_type: str,
        *,
        group_id: str = "",
        ttl_s: float = DEFAULT_TTL,
        run_id: int = 0,
    ) -> Message:
        """A new message from the server to ``dst_node_id`` (the Grid fills in the run id)."""
        kind, _ = MessageType.split(message_type)
        if kind not in MessageType.ALL:
            raise RecordError(
                f"message_type {message_type!r} must start with one of {MessageType.ALL} "
                "(optionally followed by '.name', e.g. 'train.finetune')"
            )
        metadata = Metadata(
            run_id=run_id,
            message_id=_new_message_id(),
            src_node_id=SERVER_NODE_ID,
            dst_node_id=dst_node_id,
            message_type=message_type,
            group_id=group_id,
            ttl_s=ttl_s,
            created_at=time.time(),
        )
        return cls(metadata, content=content)

    @property
    def has_content(self) -> bool:
        """True when the message carries content rather than an error."""
        return self.error is None

    @property
    def has_error(self) -> bool:
        """True when the message carries an error rather than content."""
        return self.error is not None

    def reply(self, content: RecordDict) -> Message:
        """The reply to this message, carrying ``content``."""
        return Message(self._reply_metadata(), content=content)

    def reply_error(self, code: int, reason: str) -> Message:
        """The reply to this message, carrying an error instead of content."""
        return Message(self._reply_metadata(), error=Error(int(code), reason))

    def _reply_metadata(self) -> Metadata:
        md = self.metadata
        now = time.time()
        remaining = md.ttl_s - (now - md.created_at) if md.created_at else md.ttl_s
        return Metadata(
            run_id=md.run_id,
            message_id=_new_message_id(),
            src_node_id=md.dst_node_id,
            dst_node_id=md.src_node_id,
            message_type=md.message_type,
            reply_to_message_id=md.message_id,
            group_id=md.group_id,
            ttl_s=max(remaining, 0.0),
            created_at=now,
        )

    def with_metadata(self, **changes: object) -> Message:
        """A copy with some metadata fields changed (content is shared, not copied)."""
        return Message(dataclasses.replace(self.metadata, **changes), self.content, self.error)  # type: ignore[arg-type]
