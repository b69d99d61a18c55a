"""ClientApps the simulation tests run, importable by worker processes as 'fixture_apps:NAME'."""

import fcntl
import os
import threading
import time

import numpy as np

from pollinate import ArrayRecord, ClientApp, MetricRecord, RecordDict

SHAPE = (4, 3)


def _noisy_update(msg, context):
    """A deterministic, node- and round-dependent update with float rounding in it."""
    config = msg.content["config"]
    rng = np.random.default_rng([context.node_id, config["server-round"]])
    arrays = msg.content["arrays"]
    new = {k: a.numpy() + rng.normal(size=a.shape).astype(a.dtype) / 3 for k, a in arrays.items()}
    count = context.state.get("count", MetricRecord({"rounds": 0}))
    count["rounds"] += 1
    context.state["count"] = count
    delay = config.get("delay", 0.0)
    if delay:
        time.sleep(delay * (context.node_id % 3))  # replies arrive out of order
    metrics = MetricRecord({"num-examples": 10 + context.node_id, "rounds-seen": count["rounds"]})
    return msg.reply(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}))


noisy = ClientApp()
noisy.train()(_noisy_update)

crashing = ClientApp()


@crashing.train()
def _crash_on_node_2(msg, context):
    if context.node_id == 2:
        os._exit(3)
    return _noisy_update(msg, context)


stalling = ClientApp()


@stalling.train()
def _stall_on_node_2(msg, context):
    if context.node_id == 2:
        time.sleep(60)
    return _noisy_update(msg, context)


dies_when_idle = ClientApp()


@dies_when_idle.train()
def _reply_then_exit_when_told(msg, context):
    """Node 1's worker exits after its first reply, once the server releases ``go-lock``.

    It holds ``exit-lock`` until it exits, so the server learns of the exit by taking that lock:
    the worker is gone between the rounds, whatever the machine's load, with no sleep.
    """
    if context.node_id == 1 and "exited" not in context.state:
        context.state["exited"] = MetricRecord({"yes": 1})
        config = msg.content["config"]
        held = open(config["exit-lock"], "w")  # noqa: SIM115 (held until the exit closes it)
        fcntl.flock(held, fcntl.LOCK_EX)
        args = (held, config["go-lock"])
        threading.Thread(target=_exit_when_free, args=args, daemon=True).start()
    return _noisy_update(msg, context)


def _exit_when_free(held, go_path):
    """Wait for the server to release ``go_path``, then exit, still holding ``held``."""
    with open(go_path, "w") as go:
        fcntl.flock(go, fcntl.LOCK_EX)
        os._exit(0)


huge_metric = ClientApp()


@huge_metric.train()
def _huge_metric_on_node_2(msg, context):
    reply = _noisy_update(msg, context)
    if context.node_id == 2:
        reply.content["metrics"]["big"] = 2**70  # fine in Python, refused: too big for the wire
    return reply


def initial_arrays():
    return ArrayRecord({"w": np.zeros(SHAPE, np.float32), "b": np.zeros(3, np.float32)})
