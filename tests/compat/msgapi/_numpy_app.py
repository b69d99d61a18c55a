"""A small message-API app in Flower's style (numpy only), importable by worker processes.

Node ``i`` (partition ``i - 1``) holds ``i * 10`` examples and moves every weight by ``+i``:
FedAvg's weighted mean after one round is then ``w + sum(i * 10i) / sum(10i)``.
"""

from __future__ import annotations

import numpy as np

from pollinate.compat.flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from pollinate.compat.flwr.clientapp import ClientApp
from pollinate.compat.flwr.serverapp import Grid, ServerApp
from pollinate.compat.flwr.serverapp.strategy import FedAvg

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Add the node's number to every weight; count the calls in the node's state."""
    node = int(context.node_config["partition-id"]) + 1
    arrays = msg.content["arrays"].to_numpy_ndarrays()
    for array in arrays:
        array += node  # Flower's arrays are writable copies
    calls = context.state.get("calls", MetricRecord({"n": 0}))
    calls["n"] = calls["n"] + 1
    context.state["calls"] = calls
    scale = msg.content["config"].get("scale", 1.0)
    metrics = MetricRecord(
        {"num-examples": 10 * node, "calls": calls["n"], "scale": scale, "node": node}
    )
    content = RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Report the mean weight as the loss."""
    weights = msg.content["arrays"].to_numpy_ndarrays()
    loss = float(np.mean([w.mean() for w in weights]))
    metrics = MetricRecord({"loss": loss, "num-examples": 5})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)


@app.query("count")
def count(msg: Message, context: Context) -> Message:
    """How many times this node trained (its state survives between messages)."""
    calls = context.state.get("calls", MetricRecord({"n": 0}))
    return Message(RecordDict({"metrics": MetricRecord({"n": calls["n"]})}), reply_to=msg)


def initial_arrays() -> ArrayRecord:
    """Two small float64 arrays of zeros."""
    return ArrayRecord([np.zeros((2, 3)), np.zeros(4)])


server = ServerApp()


@server.main()
def main(grid: Grid, context: Context) -> None:
    """FedAvg for ``num-server-rounds`` rounds; returns nothing, as Flower's do."""
    strategy = FedAvg(fraction_evaluate=context.run_config.get("fraction-evaluate", 1.0))
    strategy.start(
        grid=grid,
        initial_arrays=initial_arrays(),
        train_config=ConfigRecord({"scale": 2.0}),
        num_rounds=int(context.run_config.get("num-server-rounds", 2)),
    )
