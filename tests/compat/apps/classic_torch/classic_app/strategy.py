"""A FedAvg that checkpoints each round's model and keeps every central evaluation on disk."""

import json

import torch

from classic_app.task import new_model, set_weights
from pollinate.compat.flwr.common import parameters_to_ndarrays
from pollinate.compat.flwr.server.strategy import FedAvg


class CheckpointingFedAvg(FedAvg):
    """FedAvg, plus checkpoint_round_N.pt each round and central.json after each evaluation."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.central: dict[int, dict] = {}

    def aggregate_fit(self, server_round, results, failures):
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        # The results again, after FedAvg has read them: the examples behind this average.
        metrics["examples"] = sum(fit_res.num_examples for _, fit_res in results)
        model = new_model()
        set_weights(model, parameters_to_ndarrays(parameters))
        torch.save(model.state_dict(), f"checkpoint_round_{server_round}.pt")
        return parameters, metrics

    def evaluate(self, server_round, parameters):
        loss, metrics = super().evaluate(server_round, parameters)
        self.central[server_round] = {"loss": loss, **metrics}
        with open("central.json", "w") as out:
            json.dump(self.central, out)
        return loss, metrics
