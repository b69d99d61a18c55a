"""flowermnist: the ClientApp, trains on this node's skewed shard."""

import torch

from flowermnist import task
from pollinate.compat.flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from pollinate.compat.flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context):
    """Train the received model on local data for ``local-epochs`` epochs."""
    config = context.run_config
    torch.set_num_threads(config["threads"])
    dataset, data_dir = config["dataset"], config["data-dir"]
    partition_id = context.node_config["partition-id"]
    x, y = task.partition(dataset, data_dir, partition_id, context.node_config["num-partitions"])

    model = task.Net(task.pixels(dataset, data_dir))
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    train_loss = task.train(
        model,
        x,
        y,
        epochs=config["local-epochs"],
        batch_size=config["batch-size"],
        lr=msg.content["config"]["lr"],
        momentum=config["momentum"],
        seed=partition_id,
    )

    metrics = MetricRecord({"train_loss": train_loss, "num-examples": len(y)})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)
