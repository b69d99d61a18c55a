"""The ClientApp: W2's local training on this node's partition (no federated evaluation)."""

from __future__ import annotations

from cross_device_mnist import task
from pollinate import ClientApp, Context, Message, MetricRecord, RecordDict, frameworks

app = ClientApp()


@app.warmup()
def split_data(context: Context) -> None:
    """Read and split the data once per process before round 1, as the floor does untimed."""
    settings = task.Settings.from_config(context.run_config)
    settings.apply_threads()
    num_partitions = int(context.node_config["num-partitions"])
    task.load_partitions(settings.data_dir, num_partitions, settings.alpha, settings.seed)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One local epoch of SGD, shuffled by ``round * 1_000_003 + partition-id`` as the floor."""
    settings = task.Settings.from_config(context.run_config)
    settings.apply_threads()
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    data = task.load_partitions(settings.data_dir, num_partitions, settings.alpha, settings.seed)
    server_round = msg.content.config().value("server-round", int)
    device = context.node_config.get("device", "cpu")  # cuda:0 when given a GPU
    net = task.Net().to(device)
    frameworks.torch.load_arrays(net, msg.content.arrays())
    task.train(
        net,
        data[partition_id],
        epochs=settings.local_epochs,
        batch_size=settings.batch_size,
        lr=settings.learning_rate,
        seed=server_round * task.ROUND_SEED_STRIDE + partition_id,
        device=str(device),
    )
    arrays = frameworks.torch.to_arrays(net)
    metrics = MetricRecord({"num-examples": len(data[partition_id])})
    return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))
