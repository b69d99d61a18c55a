"""The ServerApp: FedAvg over every node, with centralized evaluation on held-out digits."""

from __future__ import annotations

from pollinate import ArrayRecord, Context, FedAvg, Grid, Result, ServerApp, frameworks
from quickstart import task

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> Result:
    """Train for ``num-server-rounds`` rounds, every node each round."""
    settings = task.Settings.from_config(context.run_config)
    settings.apply_threads()
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=settings.fraction_evaluate,
        min_train_nodes=1,
        min_evaluate_nodes=1,
        min_available_nodes=1,
        seed=settings.seed,
    )
    initial = frameworks.torch.to_arrays(task.make_model(settings.seed))
    return strategy.start(
        grid, initial, num_rounds=settings.num_server_rounds, evaluate_fn=central_evaluate
    )


def central_evaluate(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
    """Loss and accuracy on the held-out test set, and accuracy on each missing-digit subset."""
    model = task.Net()
    frameworks.torch.load_arrays(model, arrays)
    _, test_set = task.load_split()
    loss, accuracy = task.test(model, test_set)
    return {"loss": loss, "accuracy": accuracy, **task.missing_digit_accuracies(model, test_set)}
