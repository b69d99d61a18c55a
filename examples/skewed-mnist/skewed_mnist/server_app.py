"""The ServerApp: FedAvg over all nodes, centralized evaluation on the MNIST test set."""

from __future__ import annotations

from pollinate import ArrayRecord, Context, FedAvg, Grid, Result, ServerApp, frameworks
from skewed_mnist import task

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> Result:
    """W1: ``num-server-rounds`` rounds of FedAvg, every node trains every round."""
    settings = task.Settings.from_config(context.run_config)
    settings.apply_threads()
    test_set = task.load_test(settings.data_dir)  # fails here, before round 1, if data is missing
    if settings.preload_data:
        # In a one-process simulation the nodes share this process's cache: reading their
        # data now keeps file reading out of the rounds, as the floor keeps it out of its timing.
        task.load_partitions(settings.data_dir, len(grid.node_ids()))
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=settings.fraction_evaluate,
        min_train_nodes=1,
        min_evaluate_nodes=1,
        min_available_nodes=1,
    )

    def evaluate(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        net = task.Net()
        frameworks.torch.load_arrays(net, arrays)
        return task.scores(net, test_set)

    initial = frameworks.torch.to_arrays(task.initial_model())
    return strategy.start(
        grid, initial, num_rounds=settings.num_server_rounds, evaluate_fn=evaluate
    )
