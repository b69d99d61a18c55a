"""Apps, grids and mods the SecAgg+ tests share (importable by the process backend)."""

from __future__ import annotations

import numpy as np

from pollinate import ArrayRecord, ClientApp, MetricRecord, RecordDict
from pollinate.message import ErrorCode
from pollinate.privacy import secaggplus_mod
from pollinate.server import Grid


def delta_of(node_id: int, seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """The update node ``node_id`` makes: a fixed pseudo-random delta within [-1, 1]."""
    return np.random.default_rng([seed, node_id]).uniform(-1.0, 1.0, shape)


def train(msg, context):
    """Adds its own delta to the model and reports its node id as its example count."""
    seed = int(msg.content.config().get("delta-seed", 0))
    arrays = msg.content.arrays()
    out = ArrayRecord(
        {
            name: (a.numpy() + delta_of(context.node_id, seed, a.shape)).astype(a.dtype)
            for name, a in arrays.items()
        }
    )
    metrics = MetricRecord({"num-examples": context.node_id, "loss": 1.0})
    return msg.reply(RecordDict({"arrays": out, "metrics": metrics}))


def make_app(drops: dict[str, set[int]] | None = None, without_mod: set[int] = frozenset()):
    """A SecAgg+ ClientApp; nodes in ``drops[stage]`` go silent at that stage."""
    drops = drops or {}

    def dropout(message, context, call_next):
        config = message.content.get("config")
        stage = config.get("secagg.stage") if config is not None else None
        if context.node_id in drops.get(stage, ()):
            return message.reply_error(ErrorCode.NODE_UNAVAILABLE, f"dropped at {stage}")
        if context.node_id in without_mod:
            return call_next(message, context)
        return secaggplus_mod(message, context, call_next)

    app = ClientApp(mods=[dropout] if (drops or without_mod) else [secaggplus_mod])
    app.train()(train)
    return app


app = make_app()
"""The plain SecAgg+ app, by import string for the process backend and deployed nodes."""


class RecordingGrid(Grid):
    """A grid that shows the test what the server sees, and may alter what it sends.

    ``alter(stage, message) -> message`` changes a stage message on its way; ``states``
    keeps each node's context.state as it was after each stage.
    """

    def __init__(self, inner, alter=None):
        self.inner = inner
        self.alter = alter
        self.sent: list = []
        self.replies: list = []
        self.states: dict[tuple[str, int], object] = {}
        self._stage_of: dict[str, str] = {}

    @property
    def run_id(self):
        return self.inner.run_id

    def node_ids(self):
        return self.inner.node_ids()

    def send(self, messages):
        out = []
        for message in messages:
            config = message.content.get("config")
            stage = config.get("secagg.stage", "") if config is not None else ""
            if self.alter is not None:
                message = self.alter(stage, message)
            out.append(message)
        self.sent.extend(out)
        ids = self.inner.send(out)
        for message, mid in zip(out, ids, strict=True):
            config = message.content.get("config")
            self._stage_of[mid] = config.get("secagg.stage", "") if config is not None else ""
        return ids

    def receive(self, message_ids, timeout_s=None):
        for reply in self.inner.receive(message_ids, timeout_s):
            stage = self._stage_of.get(reply.metadata.reply_to_message_id, "")
            self.replies.append((stage, reply))
            node = reply.metadata.src_node_id
            self.states[(stage, node)] = self.inner.node_state(node)
            yield reply
