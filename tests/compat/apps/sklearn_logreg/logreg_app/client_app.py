"""logreg_app's ClientApp: a few solver iterations on this node's wine samples."""

from sklearn.metrics import log_loss

from logreg_app.task import WINE_CLASSES, new_model, node_data, set_weights, train_briefly, weights
from pollinate.compat.flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from pollinate.compat.flwr.clientapp import ClientApp

app = ClientApp()


def _model_and_data(msg: Message, context: Context):
    """The model holding the server's weights, and this node's data."""
    config = context.run_config
    model = new_model(config["regularisation"], config["local-iterations"])
    set_weights(model, msg.content["arrays"].to_numpy_ndarrays())
    node = context.node_config
    return model, node_data(node["partition-id"], node["num-partitions"])


def _metrics(model, x, y, prefix: str) -> MetricRecord:
    loss = log_loss(y, model.predict_proba(x), labels=WINE_CLASSES)
    return MetricRecord(
        {f"{prefix}_logloss": loss, "accuracy": model.score(x, y), "num-examples": len(y)}
    )


@app.train()
def train(msg: Message, context: Context):
    """Move the weights a little towards this node's optimum and send them back."""
    model, (x_train, y_train, _, _) = _model_and_data(msg, context)
    train_briefly(model, x_train, y_train)
    content = {
        "arrays": ArrayRecord(weights(model)),
        "metrics": _metrics(model, x_train, y_train, "train"),
    }
    return Message(content=RecordDict(content), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context):
    """Score the global weights on this node's held-back samples."""
    model, (_, _, x_test, y_test) = _model_and_data(msg, context)
    content = RecordDict({"metrics": _metrics(model, x_test, y_test, "test")})
    return Message(content=content, reply_to=msg)
