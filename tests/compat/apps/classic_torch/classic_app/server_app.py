"""classic_app's ServerApp: a ``server_fn`` that builds the strategy from the run config."""

import json

from classic_app.strategy import CheckpointingFedAvg
from classic_app.task import central_loader, get_weights, new_model, set_weights, test
from pollinate.compat.flwr.common import Context, ndarrays_to_parameters
from pollinate.compat.flwr.server import ServerApp, ServerAppComponents, ServerConfig


def evaluate_centrally(server_round, arrays, config):
    """The global model on the server's own points: (loss, {"central_accuracy": ...})."""
    model = new_model()
    set_weights(model, arrays)
    loss, accuracy = test(model, central_loader())
    return loss, {"central_accuracy": accuracy}


def mean_accuracy(replies):
    """Accuracy over all evaluated points (each node's weighted by its count)."""
    points = sum(count for count, _ in replies)
    return {"accuracy": sum(count * m["accuracy"] for count, m in replies) / points}


def decode_reports(replies):
    """Unpack the JSON ``report`` each node sent with its training results."""
    reports = [json.loads(metrics["report"]) for _, metrics in replies]
    evaluated = [r["messages"] - r["times_trained"] for r in reports]
    (lr,) = {r["lr"] for r in reports}
    return {
        "most_trained": max(r["times_trained"] for r in reports),
        "min_evaluated": min(evaluated),
        "max_evaluated": max(evaluated),
        "lr": lr,
    }


def learning_rate(server_round):
    """Halve the step size from the third round on."""
    return {"lr": 0.2 if server_round < 3 else 0.1}


def server_fn(context: Context):
    strategy = CheckpointingFedAvg(
        fraction_fit=context.run_config["fraction-fit"],
        fraction_evaluate=1.0,
        min_available_clients=2,
        initial_parameters=ndarrays_to_parameters(get_weights(new_model())),
        on_fit_config_fn=learning_rate,
        fit_metrics_aggregation_fn=decode_reports,
        evaluate_metrics_aggregation_fn=mean_accuracy,
        evaluate_fn=evaluate_centrally,
    )
    rounds = context.run_config["num-server-rounds"]
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))


app = ServerApp(server_fn=server_fn)
