"""The ServerApp: FedAvg with all 10 nodes training and half of them evaluating each round."""

from __future__ import annotations

from cifar10_tutorial import task
from pollinate import Context, FedAvg, Grid, Result, ServerApp, frameworks

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> Result:
    """Train for ``num-server-rounds`` rounds; report the clients' weighted-average accuracy."""
    settings = task.Settings.from_config(context.run_config)
    settings.apply_threads()
    task.check_data(settings.data_dir)  # a missing archive stops the run here, before round 1
    # FedAvg averages the evaluate replies' metrics weighted by their "num-examples", so the
    # round's "accuracy" is already the examples-weighted mean over the evaluating clients
    # (pass evaluate_metrics_aggr_fn to aggregate them differently).
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.5,
        min_train_nodes=10,
        min_evaluate_nodes=5,
        min_available_nodes=10,
        seed=settings.seed,
    )
    initial = frameworks.torch.to_arrays(task.make_model(settings.seed))
    return strategy.start(grid, initial, num_rounds=settings.num_server_rounds)
