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
    data = _on_device(_data(context).train, context)
    model = _received_model(msg, context)
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
    data = _on_device(_data(context).validation, context)
    loss, accuracy = task.test(_received_model(msg, context), data)
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


def _device(context: Context) -> str:
    """Where this node trains: ``cuda:0`` when the simulation gave it a GPU, else ``cpu``."""
    return str(context.node_config.get("device", "cpu"))


def _on_device(data: task.Split, context: Context) -> task.Split:
    return task.Split(data.x.to(_device(context)), data.y.to(_device(context)))


def _received_model(msg: Message, context: Context) -> task.Net:
    model = task.Net().to(_device(context))
    frameworks.torch.load_arrays(model, msg.content.arrays())
    return model
