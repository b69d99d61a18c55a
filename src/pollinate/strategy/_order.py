"""Replies in the order their messages were sent, whatever order they arrive in.

Folding replies in a fixed order makes a float aggregate the same bit for bit from run to
run, however the transport interleaves them. Early arrivals wait in a buffer until every
message sent before theirs has been answered, so the buffer holds only the replies that
overtook a slower one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..message import Message

__all__ = ["in_send_order"]


def in_send_order(replies: Iterable[Message], message_ids: Sequence[str]) -> Iterator[Message]:
    """Yield ``replies`` ordered as ``message_ids``; a reply to an unknown id is dropped."""
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
