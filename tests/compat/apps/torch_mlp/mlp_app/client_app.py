"""mlp_app's ClientApp: trains and scores the global MLP on this node's points."""

from mlp_app.task import PointMLP, fit, node_loaders, score
from pollinate.compat.flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from pollinate.compat.flwr.clientapp import ClientApp

app = ClientApp()


def _received_model(msg: Message, context: Context) -> PointMLP:
    """The MLP with the weights the server sent."""
    model = PointMLP(context.run_config["hidden-units"])
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    return model


def _loaders(context: Context):
    node = context.node_config
    batch_size = context.run_config["batch-size"]
    return node_loaders(node["partition-id"], node["num-partitions"], batch_size)


@app.train()
def train(msg: Message, context: Context):
    """Train on local points at the learning rate the server chose; send the weights back."""
    model = _received_model(msg, context)
    train_loader, _ = _loaders(context)
    lr = msg.content["config"]["lr"]
    loss = fit(model, train_loader, context.run_config["local-epochs"], lr)
    metrics = MetricRecord(
        {"train_loss": loss, "lr": lr, "num-examples": len(train_loader.dataset)}
    )
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context):
    """Score the global model on this node's validation points."""
    model = _received_model(msg, context)
    _, val_loader = _loaders(context)
    loss, accuracy = score(model, val_loader)
    metrics = {"eval_loss": loss, "eval_acc": accuracy, "num-examples": len(val_loader.dataset)}
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
