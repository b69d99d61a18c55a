"""classic_app's ClientApp: a NumPyClient that remembers, in the node's state, each loss.

A mod counts every message the node handles in that state too; ``fit`` reports both counts
as one JSON string metric, which the server decodes.
"""

import json

from classic_app.task import get_weights, new_model, node_loaders, set_weights, test, train
from pollinate.compat.flwr.client import ClientApp, NumPyClient
from pollinate.compat.flwr.common import ConfigRecord, Context


class RememberingClient(NumPyClient):
    """Trains and evaluates the global model; its training history outlives the instance."""

    def __init__(self, context: Context) -> None:
        self.model = new_model()
        self.train_loader, self.val_loader = node_loaders(context.node_config["partition-id"])
        self.epochs = context.run_config["local-epochs"]
        self.state = context.state.config_records
        if "history" not in self.state:
            self.state["history"] = ConfigRecord()

    def fit(self, parameters, config):
        set_weights(self.model, parameters)
        loss = train(self.model, self.train_loader, self.epochs, config["lr"])
        history = self.state["history"]
        if "losses" in history:
            history["losses"].append(loss)  # the list lives in the node's state
        else:
            history["losses"] = [loss]
        report = {
            "times_trained": len(history["losses"]),
            "messages": self.state["mod"]["messages"],
            "lr": config["lr"],
        }
        metrics = {"train_loss": loss, "report": json.dumps(report)}
        return get_weights(self.model), len(self.train_loader.dataset), metrics

    def evaluate(self, parameters, config):
        set_weights(self.model, parameters)
        loss, accuracy = test(self.model, self.val_loader)
        return loss, len(self.val_loader.dataset), {"accuracy": accuracy}


def count_messages(msg, context: Context, call_next):
    """A mod: count each message this node receives, before the client sees it."""
    records = context.state.config_records
    if "mod" not in records:
        records["mod"] = ConfigRecord({"messages": 0})
    records["mod"]["messages"] += 1
    return call_next(msg, context)


def client_fn(context: Context):
    return RememberingClient(context).to_client()


app = ClientApp(client_fn=client_fn, mods=[count_messages])
