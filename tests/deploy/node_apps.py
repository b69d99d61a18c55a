"""ClientApps the deployment tests run on nodes, in threads or in separate processes."""

import sys
import time

from pollinate import ArrayRecord, ClientApp, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(msg, context):
    """Add (partition-id + 1) to every array; first sleep ``sleep-s`` if ``slow-partitions``
    (space-separated ids) names this node's partition."""
    partition = int(context.node_config.get("partition-id", 0))
    if str(partition) in str(context.run_config.get("slow-partitions", "")).split():
        time.sleep(float(context.run_config.get("sleep-s", 0.0)))
    new = {k: a.numpy() + partition + 1 for k, a in msg.content.arrays().items()}
    seen = context.state.get("seen")
    rounds = (seen["rounds"] if isinstance(seen, MetricRecord) else 0) + 1
    context.state["seen"] = MetricRecord({"rounds": rounds})  # kept by the node across rounds
    tag = float(context.run_config.get("tag", 0.0))
    metrics = MetricRecord({"num-examples": 10, "tag": tag, "rounds-seen": rounds})
    return msg.reply(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}))


@app.evaluate()
def evaluate(msg, context):
    return msg.reply(RecordDict({"metrics": MetricRecord({"num-examples": 10, "accuracy": 0.5})}))


if __name__ == "__main__":  # python node_apps.py ADDRESS PARTITION: a node in its own process
    from pollinate.deploy import Backoff, run_node

    run_node(
        sys.argv[1],
        app,
        node_config={"partition-id": int(sys.argv[2])},
        backoff=Backoff(initial_s=0.1, max_s=0.5, give_up_s=20),
    )
