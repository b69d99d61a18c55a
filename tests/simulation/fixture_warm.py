"""ClientApps for test_warmup.py and test_process_replies.py, importable as 'fixture_warm:NAME'."""

import contextlib
from pathlib import Path

from pollinate import ClientApp, MetricRecord, RecordDict

WARMED: list[tuple[int, int]] = []
"""The run id and num-partitions each warm-up in this process saw, in order."""

warm = ClientApp()


@warm.warmup()
def _remember(context):
    WARMED.append((context.run_id, int(context.node_config["num-partitions"])))


@warm.train()
def _report_warmups(msg, context):
    """Echo the model; say how many warm-ups this process ran for this run, and what they saw."""
    seen = [size for run_id, size in WARMED if run_id == context.run_id]
    metrics = MetricRecord({"num-examples": 1, "warmups": len(seen), "saw": sum(seen)})
    return msg.reply(RecordDict({"arrays": msg.content["arrays"], "metrics": metrics}))


failing_warmup = ClientApp()


@failing_warmup.warmup()
def _no_data(context):
    raise FileNotFoundError("no data here")


failing_warmup.train()(_report_warmups)

marking = ClientApp()


@marking.train()
def _mark_start(msg, context):
    """Create ``<marks>/<node id>`` as the task starts, then echo the model."""
    Path(msg.content["config"]["marks"], str(context.node_id)).touch()
    return _report_warmups(msg, context)


configured = ClientApp()


@configured.train()
def _report_config(msg, context):
    """Reply with the run config's ``lr``, after trying (and failing) to change it."""
    with contextlib.suppress(TypeError):
        context.run_config["lr"] = -1.0
    metrics = MetricRecord({"num-examples": 1, "lr": context.run_config["lr"]})
    return msg.reply(RecordDict({"arrays": msg.content["arrays"], "metrics": metrics}))


huge_reply = ClientApp()


@huge_reply.train()
def _reply_20_mb(msg, context):
    """A 20 MB reply (over the shared buffer's limit, so it takes the socket) filled with the
    node id, whatever the node was sent."""
    import numpy as np

    from pollinate import ArrayRecord

    arrays = ArrayRecord({"x": np.full(5_000_000, context.node_id, np.float32)})
    metrics = MetricRecord({"num-examples": 1})
    return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))


hangs_when_replaced = ClientApp()


@hangs_when_replaced.warmup()
def _hang_if_marked(context):
    """The first warm-up leaves a mark in the run config's ``marks``; a later one (a
    replacement worker's) waits for good."""
    import time

    mark = Path(context.run_config["marks"], "warmed")
    if mark.exists():
        time.sleep(3600)
    mark.touch()


@hangs_when_replaced.train()
def _exit_at_once(msg, context):
    import os

    os._exit(3)
