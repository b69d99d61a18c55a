"""The device: trains on its shard; its update is clipped, then masked, before it leaves.

Mod order matters: ``secaggplus_mod`` outside, ``fixed_clipping_mod`` inside, so the
update is clipped to the server's ``dp.clip-norm`` before SecAgg+ quantizes and masks it.
"""

from __future__ import annotations

import torch

from pollinate import ClientApp, Context, Message, MetricRecord, RecordDict, frameworks
from pollinate.privacy import fixed_clipping_mod, secaggplus_mod
from private_mnist import task

app = ClientApp(mods=[secaggplus_mod, fixed_clipping_mod])


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model on this device's shard for ``local-epochs`` epochs."""
    settings = task.Settings.from_config(context.run_config)
    torch.set_num_threads(settings.threads)
    partition = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    data = task.load_partition(settings.data_dir, partition, num_partitions)
    model = task.make_model(data.x.shape[1], settings.hidden)
    frameworks.torch.load_arrays(model, msg.content.arrays())
    server_round = int(msg.content.config()["server-round"])
    task.train(
        model,
        data,
        epochs=settings.local_epochs,
        batch_size=settings.batch_size,
        lr=settings.learning_rate,
        seed=settings.seed * 10**9 + server_round * 10**5 + partition,
    )
    metrics = MetricRecord({"num-examples": len(data.y)})
    return msg.reply(RecordDict({"arrays": frameworks.torch.to_arrays(model), "metrics": metrics}))
