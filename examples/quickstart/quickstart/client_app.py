"""The ClientApp: train the global model on this node's digits, or evaluate it there."""

from __future__ import annotations

from pollinate import ClientApp, Context, Message, MetricRecord, RecordDict, frameworks
from pollinate.compare import label_counts
from quickstart import task

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model for ``local-epochs`` on this node's training data."""
    settings = task.Settings.from_config(context.run_config)
    settings.apply_threads()
    partition_id = int(context.node_config["partition-id"])
    data = _data(context).train
    model = _received_model(msg)
    server_round = msg.content.config().value("server-round", int)
    loss = task.train(
        model,
        data,
        epochs=settings.local_epochs,
        batch_size=settings.batch_size,
        lr=settings.learning_rate,
        seed=task.shuffle_seed(settings.seed, partition_id, server_round),
    )
    metrics = MetricRecord({"train-loss": loss, "num-examples": len(data)})
    arrays = frameworks.torch.to_arrays(model)
    return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Score the received model on this node's held-back examples."""
    task.Settings.from_config(context.run_config).apply_threads()
    data = _data(context).validation
    loss, accuracy = task.test(_received_model(msg), data)
    metrics = MetricRecord({"num-examples": len(data), "loss": loss, "accuracy": accuracy})
    return msg.reply(RecordDict({"metrics": metrics}))


@app.query("label-counts")
def count_labels(msg: Message, context: Context) -> Message:
    """How many training examples of each digit this node holds (for ``pollinate compare``)."""
    counts = label_counts(_data(context).train.y.numpy())
    return msg.reply(RecordDict({"metrics": counts}))


def _data(context: Context) -> task.ClientData:
    return task.load_partition(
        int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    )


def _received_model(msg: Message) -> task.Net:
    model = task.Net()
    frameworks.torch.load_arrays(model, msg.content.arrays())
    return model
