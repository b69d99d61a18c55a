"""ClientApps the deployment tests run on nodes, in threads or in separate processes."""

import sys
import time

from pollinate import ArrayRecord, ClientApp, ConfigRecord, MetricRecord, RecordDict

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
    content = RecordDict({"arrays": ArrayRecord(new), "metrics": metrics})
    bad = str(context.run_config.get("bad-reply", ""))
    if bad and str(partition) in str(context.run_config.get("bad-partitions", "")).split():
        _spoil(content, bad)
    return msg.reply(content)


def _spoil(content, how):
    """Make a reply the rules refuse: an int metric of 2**70, or a str no wire can carry."""
    if how == "huge-int":
        content["metrics"]["big"] = 2**70
    else:
        content["config"] = ConfigRecord({"text": "\ud800"})  # a lone surrogate: no UTF-8


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
