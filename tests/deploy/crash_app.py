"""A small federation for the crash and full-disk tests: its files and model are exact.

``python crash_app.py DB OUT`` serves one run of it with ``start_server(db=DB)``, with its
two nodes in threads of the same process, so a fault point that kills the process kills
the whole federation (start it in a session of its own: the fault kills its process
group); started again with the same DB, the run resumes.
"""

import sys
import threading
from pathlib import Path

import numpy as np

from pollinate import ArrayRecord, ClientApp, FedAvg, MetricRecord, RecordDict, ServerApp
from pollinate._durable import fault_point
from pollinate.deploy import Backoff, run_node, start_server

ROUNDS = 3
NODES = 2

client = ClientApp()


@client.train()
def train(msg, context):
    """Move every weight by the node's partition id + 1, scaled: exact in float64."""
    step = (int(context.node_config["partition-id"]) + 1) * 0.25
    new = {k: a.numpy() + step for k, a in msg.content.arrays().items()}
    metrics = MetricRecord({"num-examples": 1 + int(context.node_config["partition-id"])})
    return msg.reply(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}))


def evaluate(server_round, arrays):
    """Centralized evaluation; tests kill the link here (``evaluate``, ``round-NNNN``)."""
    fault_point("evaluate", f"round-{server_round:04d}")
    return {"mean": float(np.mean(arrays["w"].numpy()))}


def server_app(rounds=ROUNDS):
    """FedAvg over both nodes for ``rounds`` rounds, with a centralized evaluation."""
    app = ServerApp()

    @app.main()
    def main(grid, context):
        strategy = FedAvg(min_available_nodes=NODES, min_train_nodes=NODES, fraction_evaluate=0)
        initial = ArrayRecord({"w": np.zeros(4), "b": np.ones((2, 2))})
        return strategy.start(grid, initial, num_rounds=rounds, evaluate_fn=evaluate)

    return app


def start_nodes(port, count=NODES):
    """The federation's nodes, in daemon threads of this process."""
    for partition in range(count):
        threading.Thread(
            target=run_node,
            args=(f"127.0.0.1:{port}", client),
            kwargs={
                "node_config": {"partition-id": partition},
                "backoff": Backoff(initial_s=0.05, max_s=0.2, give_up_s=10),
            },
            daemon=True,
        ).start()


if __name__ == "__main__":
    db, out = Path(sys.argv[1]), Path(sys.argv[2])
    start_server(
        "127.0.0.1:0",
        server_app=server_app(),
        insecure=True,
        min_nodes=NODES,
        wait_s=30,
        out_dir=out,
        db=db,
        on_listening=start_nodes,
    )
