"""mlp_app's ServerApp: FedAvg from a fresh MLP, scored on held-out points each round."""

import torch

from mlp_app.task import PointMLP, held_out_loader, score
from pollinate.compat.flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from pollinate.compat.flwr.serverapp import Grid, ServerApp
from pollinate.compat.flwr.serverapp.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run FedAvg for ``num-server-rounds`` and save the final weights to final_model.pt."""
    config = context.run_config
    hidden = config["hidden-units"]

    def evaluate_globally(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = PointMLP(hidden)
        model.load_state_dict(arrays.to_torch_state_dict())
        loss, accuracy = score(model, held_out_loader())
        return MetricRecord({"loss": loss, "accuracy": accuracy})

    strategy = FedAvg(fraction_evaluate=config["fraction-evaluate"])
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(PointMLP(hidden).state_dict()),
        train_config=ConfigRecord({"lr": config["learning-rate"]}),
        num_rounds=config["num-server-rounds"],
        evaluate_fn=evaluate_globally,
    )
    torch.save(result.arrays.to_torch_state_dict(), "final_model.pt")
