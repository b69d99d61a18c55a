"""The ServerApp: the strategy the ``strategy`` key names, with centralized evaluation."""

from __future__ import annotations

from pollinate import ArrayRecord, Context, FedAvg, Grid, Result, ServerApp, frameworks
from pollinate.strategy import FedAsync, FedBuff, Strategy
from uneven_devices import task

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> Result:
    """Run ``num-server-rounds`` rounds (FedAvg) or ``num-versions`` versions (the others)."""
    task.apply_threads(context.run_config)
    settings = task.Settings.from_config(context.run_config)
    initial = frameworks.torch.to_arrays(task.make_model(settings.seed))
    return build_strategy(settings).start(grid, initial, num_rounds=settings.num_models)


def build_strategy(settings: task.Settings) -> Strategy:
    """The strategy ``settings.strategy`` names, every one evaluated on the held-out digits."""
    common = {
        "fraction_evaluate": 0.0,
        "seed": settings.seed,
        "train_config": {"lr": settings.learning_rate},
        "evaluate_fn": central_evaluate,
    }
    if settings.strategy == "fedbuff":
        return FedBuff(buffer_size=settings.buffer_size, concurrency=settings.concurrency, **common)
    if settings.strategy == "fedasync":
        return FedAsync(alpha=settings.fedasync_alpha, concurrency=settings.concurrency, **common)
    deadline = settings.strategy == "fedavg-deadline"
    return FedAvg(
        fraction_train=settings.fraction_train,
        min_train_nodes=1,
        min_evaluate_nodes=0,
        min_available_nodes=1,
        over_selection=settings.over_selection if deadline else 0.0,
        round_deadline_s=settings.round_deadline_s if deadline else None,
        **common,
    )


def central_evaluate(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
    """Loss and accuracy of the global model on the held-out test digits."""
    model = task.Net()
    frameworks.torch.load_arrays(model, arrays)
    _, test_set = task.load_split()
    loss, accuracy = task.test(model, test_set)
    return {"loss": loss, "accuracy": accuracy}
