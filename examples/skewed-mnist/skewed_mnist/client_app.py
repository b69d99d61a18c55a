"""The ClientApp: W1's local training on this node's partition (no federated evaluation)."""

from __future__ import annotations

from pollinate import ClientApp, Context, Message, MetricRecord, RecordDict, frameworks
from pollinate.compare import label_counts
from skewed_mnist import task

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model for ``local-epochs`` epochs; shuffling is seeded by partition."""
    settings = task.Settings.from_config(context.run_config)
    settings.apply_threads()
    partition_id = int(context.node_config["partition-id"])
    data = _data(settings, context)
    net = task.Net()
    frameworks.torch.load_arrays(net, msg.content.arrays())
    task.train(
        net,
        data,
        epochs=settings.local_epochs,
        batch_size=settings.batch_size,
        lr=settings.learning_rate,
        momentum=settings.momentum,
        seed=partition_id,
    )
    arrays = frameworks.torch.to_arrays(net)
    metrics = MetricRecord({"num-examples": len(data)})
    return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))


@app.query("label-counts")
def count_labels(msg: Message, context: Context) -> Message:
    """How many training examples of each digit this node holds (for ``pollinate compare``)."""
    data = _data(task.Settings.from_config(context.run_config), context)
    return msg.reply(RecordDict({"metrics": label_counts(data.y.numpy())}))


def _data(settings: task.Settings, context: Context) -> task.Split:
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    return task.load_partitions(settings.data_dir, num_partitions)[partition_id]
