"""The ClientApp: train the global model with DP-SGD on this node's data, and say its epsilon.

Every node trains every round, so the run's planned epochs (rounds x local epochs) are what
its ``target-epsilon`` must cover; ``DpSgd`` keeps the node's privacy account in
``context.state`` from one round to the next and refuses a step beyond the plan.
"""

from __future__ import annotations

from dpsgd_mnist import task
from pollinate import ClientApp, Context, Message, MetricRecord, RecordDict, frameworks
from pollinate.privacy import DpSgd

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model for ``local-epochs`` with DP-SGD; reply with the node's epsilon."""
    settings = task.Settings.from_config(context.run_config)
    settings.apply_threads()
    partition_id = int(context.node_config["partition-id"])
    data = task.load_partition(
        settings.data_dir, partition_id, int(context.node_config["num-partitions"])
    )
    model = task.make_model(settings.data_dir, settings.seed)
    frameworks.torch.load_arrays(model, msg.content.arrays())
    server_round = msg.content.config().value("server-round", int)
    seed = settings.seed * 1_000_000 + server_round * 1_000 + partition_id
    dp = _dp_sgd(context, settings, seed)
    loss = task.train(
        model,
        data,
        dp,
        epochs=settings.local_epochs,
        batch_size=settings.batch_size,
        lr=settings.learning_rate,
        seed=seed,
    )
    metrics = MetricRecord({"num-examples": len(data), "train-loss": loss, **dp.metrics()})
    return msg.reply(RecordDict({"arrays": frameworks.torch.to_arrays(model), "metrics": metrics}))


def _dp_sgd(context: Context, settings: task.Settings, seed: int) -> DpSgd:
    """A budget (target-epsilon over the planned epochs) or, with target-epsilon 0, a noise."""
    common = {"max_grad_norm": settings.max_grad_norm, "delta": settings.delta, "seed": seed}
    if settings.target_epsilon > 0:
        planned = settings.num_server_rounds * settings.local_epochs
        return DpSgd(
            context, target_epsilon=settings.target_epsilon, planned_epochs=planned, **common
        )
    return DpSgd(context, noise_multiplier=settings.noise_multiplier, **common)
