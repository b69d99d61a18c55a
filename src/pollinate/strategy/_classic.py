"""The classic style's one server-side need: initial arrays asked of a node."""

from __future__ import annotations

import logging

from ..errors import RoundError
from ..message import Message
from ..records import ArrayRecord, ConfigRecord, RecordDict
from ..server import Grid

__all__ = ["initial_arrays_from_a_node"]

log = logging.getLogger("pollinate.strategy")


def initial_arrays_from_a_node(grid: Grid) -> ArrayRecord:
    """Ask one node for its model's weights, as the classic API does without initial ones."""
    node_id = min(grid.node_ids())
    message = Message.create(
        RecordDict({"config": ConfigRecord()}), node_id, "query.get-parameters"
    )
    (reply,) = grid.send_and_receive([message])
    arrays = reply.content.get("arrays")
    if not isinstance(arrays, ArrayRecord):
        reason = reply.error.reason if reply.error else "its reply has no 'arrays'"
        raise RoundError(f"could not get initial parameters from node {node_id}: {reason}")
    log.info("initial parameters from node %d", node_id)
    return arrays
