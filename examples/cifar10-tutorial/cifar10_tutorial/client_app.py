"""The ClientApp, in the classic style: a NumPyClient built for each message by ``client_fn``."""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from cifar10_tutorial import task
from pollinate import ClientApp, Context, NumPyClient
from pollinate.records import ConfigValue


class CifarClient(NumPyClient):
    """Trains the CNN on one node's share of CIFAR-10 and evaluates it on the held-back part."""

    def __init__(self, data: task.ClientData, settings: task.Settings, partition_id: int) -> None:
        self.net = task.Net()
        self.data = data
        self.settings = settings
        self.partition_id = partition_id

    def get_parameters(self, config: dict[str, ConfigValue]) -> list[npt.NDArray[Any]]:
        """The local model's weights (asked for only when the server has no initial model)."""
        return task.get_weights(self.net)

    def fit(
        self, parameters: list[npt.NDArray[Any]], config: dict[str, ConfigValue]
    ) -> tuple[list[npt.NDArray[Any]], int, dict[str, Any]]:
        """Train the global model for ``local-epochs`` on this node's training images."""
        task.set_weights(self.net, parameters)
        server_round = config["server-round"]  # FedAvg puts the round number in every config
        assert isinstance(server_round, int)
        loss = task.train(
            self.net,
            self.data.train,
            epochs=self.settings.local_epochs,
            batch_size=self.settings.batch_size,
            lr=self.settings.learning_rate,
            seed=task.shuffle_seed(self.settings.seed, self.partition_id, server_round),
        )
        return task.get_weights(self.net), len(self.data.train), {"train-loss": loss}

    def evaluate(
        self, parameters: list[npt.NDArray[Any]], config: dict[str, ConfigValue]
    ) -> tuple[float, int, dict[str, Any]]:
        """Loss and accuracy of the global model on this node's held-back images."""
        task.set_weights(self.net, parameters)
        loss, accuracy = task.test(self.net, self.data.validation)
        return loss, len(self.data.validation), {"accuracy": accuracy}


def client_fn(context: Context) -> CifarClient:
    """The client of the node this message goes to: its partition of CIFAR-10 and the config."""
    settings = task.Settings.from_config(context.run_config)
    settings.apply_threads()
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    data = task.load_partition(settings.data_dir, partition_id, num_partitions)
    return CifarClient(data, settings, partition_id)


app = ClientApp(client_fn=client_fn)
