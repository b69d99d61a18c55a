"""The ServerApp: FedAvg over every node each round, scored on the held-out test set."""

from __future__ import annotations

from dpsgd_mnist import task
from pollinate import ArrayRecord, Context, FedAvg, Grid, Result, ServerApp, frameworks

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> Result:
    """Train for ``num-server-rounds`` rounds, every node each round (its plan counts on it)."""
    settings = task.Settings.from_config(context.run_config)
    settings.apply_threads()
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, seed=settings.seed)

    def evaluate(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        model = task.make_model(settings.data_dir, settings.seed)
        frameworks.torch.load_arrays(model, arrays)
        loss, accuracy = task.test(model, task.load_data(settings.data_dir)[1])
        return {"loss": loss, "accuracy": accuracy}

    initial = frameworks.torch.to_arrays(task.make_model(settings.data_dir, settings.seed))
    return strategy.start(
        grid, initial, num_rounds=settings.num_server_rounds, evaluate_fn=evaluate
    )
