"""flowermnist: the ServerApp, FedAvg over every client, evaluated on the whole test set."""

import torch

from flowermnist import task
from pollinate.compat.flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from pollinate.compat.flwr.serverapp import Grid, ServerApp
from pollinate.compat.flwr.serverapp.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """FedAvg for ``num-server-rounds`` rounds, every client training every round."""
    config = context.run_config
    torch.set_num_threads(config["threads"])
    dataset, data_dir = config["dataset"], config["data-dir"]
    _, _, x_test, y_test = task.load(dataset, data_dir)

    def global_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        """Score the global model on the whole test set."""
        model = task.Net(task.pixels(dataset, data_dir))
        model.load_state_dict(arrays.to_torch_state_dict())
        return MetricRecord(task.scores(model, x_test, y_test))

    torch.manual_seed(0)
    model = task.Net(task.pixels(dataset, data_dir))
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(model.state_dict()),
        train_config=ConfigRecord({"lr": config["learning-rate"]}),
        num_rounds=config["num-server-rounds"],
        evaluate_fn=global_evaluate,
    )
