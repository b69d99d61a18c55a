"""Apps the distributed-trust tests share (importable by the process backend and nodes)."""

from __future__ import annotations

import numpy as np

from pollinate import ArrayRecord, ClientApp, MetricRecord, RecordDict
from pollinate.privacy import fixed_clipping_mod, secaggplus_mod

SHAPE = (6,)


def delta_of(node_id: int) -> np.ndarray:
    """Node ``node_id``'s update: a fixed delta of norm about ``node_id`` (most are clipped)."""
    rng = np.random.default_rng([7, node_id])
    direction = rng.normal(size=SHAPE)
    return node_id * direction / np.linalg.norm(direction)


def train(msg, context):
    """Adds its delta; reports a weight (its id x 10) that an unweighted DP sum must ignore."""
    arrays = msg.content.arrays()
    out = ArrayRecord(
        {k: (a.numpy() + delta_of(context.node_id)).astype(a.dtype) for k, a in arrays.items()}
    )
    metrics = MetricRecord({"num-examples": 10 * context.node_id})
    return msg.reply(RecordDict({"arrays": out, "metrics": metrics}))


def make_app(*mods):
    """A ClientApp of ``train`` behind ``mods`` (outermost first)."""
    app = ClientApp(mods=list(mods))
    app.train()(train)
    return app


secure_app = make_app(secaggplus_mod, fixed_clipping_mod)
"""Distributed trust's node: SecAgg+ outside, clipping inside (the order that works)."""

clipping_app = make_app(fixed_clipping_mod)
"""The same node without SecAgg+: what the secure run must match."""


def claims_a_count(message, context, call_next):
    """A hostile mod: node 1 says its reply is the secure mean of 50 nodes."""
    reply = call_next(message, context)
    if context.node_id == 1 and not reply.has_error and "metrics" in reply.content:
        metrics = MetricRecord({**reply.content.metrics("metrics"), "secagg.count": 50})
        reply.content["metrics"] = metrics
    return reply


def stands_outside(message, context, call_next):
    """Runs ``fixed_clipping_mod`` outside SecAgg+: the order that clips the wrong thing."""
    return fixed_clipping_mod(message, context, call_next)


def train_small(msg, context):
    """Adds a delta well inside the clip: an unclipped node that no norm check would catch."""
    arrays = msg.content.arrays()
    out = ArrayRecord({k: (a.numpy() + 1e-3).astype(a.dtype) for k, a in arrays.items()})
    return msg.reply(RecordDict({"arrays": out, "metrics": MetricRecord({"num-examples": 1})}))


small_unclipped_app = ClientApp(mods=[secaggplus_mod])
small_unclipped_app.train()(train_small)
"""A node that forgot fixed_clipping_mod, with updates too small to exceed the clip."""
