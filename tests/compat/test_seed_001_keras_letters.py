# ruff: noqa: UP006, UP007, UP035, UP045, B905, RUF059  (the tutorial's own code, kept as printed)
"""Seed 001 ("Introduction to Federated Machine Learning with Example", Keras letters).

The article's server (a ``CustomStrategy`` that logs the aggregated accuracy and saves the
model each round, ``start_server``, ``plot(history)``) and client (a NumPyClient around a
Keras model, ``start_numpy_client``), as printed in ../shared/seeds/001_*.txt with only the
Flower imports changed. The letter images are not on this machine: ``get_datasets``
returns a ``keras.utils.PyDataset`` of 100x100 grayscale stand-ins with a learnable class
signal, made in the test. The server and 3 clients talk over real gRPC on 127.0.0.1, in
threads; 3 rounds instead of 6, to keep it short.
"""

from __future__ import annotations

import os
from logging import INFO
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import pollinate.compat.flwr as fl  # noqa: E402  # was: import flwr as fl
from pollinate.compat.flwr.common import (  # noqa: E402  # was: from flwr.common import ...
    EvaluateRes,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
)
from pollinate.compat.flwr.common.logger import log  # noqa: E402  # was: flwr.common.logger
from pollinate.compat.flwr.server.client_proxy import ClientProxy  # noqa: E402  # was: flwr.server...

from ._threads import free_address, run_federation  # noqa: E402

NUM_ROUNDS = 3

# Keras's own get_weights() trips NumPy 2's __array__(copy=...) deprecation (as in
# tests/frameworks/test_keras.py): not this layer's warning to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def get_model() -> keras.Model:
    model = keras.Sequential(
        [
            keras.layers.Input(shape=(100, 100, 1)),
            keras.layers.Conv2D(8, 5, activation="relu", kernel_initializer="variance_scaling"),
            keras.layers.MaxPooling2D(strides=(2, 2)),
            keras.layers.Conv2D(16, 3, activation="relu", kernel_initializer="variance_scaling"),
            keras.layers.Flatten(),
            keras.layers.Dense(
                units=10, activation="softmax", kernel_initializer="variance_scaling"
            ),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class CustomStrategy(fl.server.strategy.FedAvg):
    def aggregate_evaluate(
        self,
        server_round: int,
        results: List[Tuple[ClientProxy, EvaluateRes]],
        failures: List[Union[Tuple[ClientProxy, EvaluateRes], BaseException]],
    ) -> Tuple[Optional[float], Dict[str, Scalar]]:
        if not results:
            return None, {}
        loss, metrics = super().aggregate_evaluate(server_round, results, failures)
        accuracies = [r.metrics["accuracy"] * r.num_examples for _, r in results]
        examples = [r.num_examples for _, r in results]
        accuracy = sum(accuracies) / sum(examples)
        log(
            INFO,
            f"Round {server_round} accuracy aggregated from {len(results)} clients: {accuracy}",
        )
        return loss, {"accuracy": accuracy}

    def aggregate_fit(
        self,
        server_round: int,
        results: List[Tuple[ClientProxy, FitRes]],
        failures: List[Union[Tuple[ClientProxy, FitRes], BaseException]],
    ) -> Tuple[Optional[Parameters], Dict[str, Scalar]]:
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        if parameters is not None:
            model = get_model()
            model.set_weights(fl.common.parameters_to_ndarrays(parameters))
            model.save(f"models/model-round-{server_round}.keras")
            log(INFO, f"Saving round {server_round} model")
        return parameters, metrics


def plot(history: fl.server.history.History) -> None:
    accuracy = history.metrics_distributed["accuracy"]
    accuracy_index = [data[0] for data in accuracy]
    accuracy_value = [100.0 * data[1] for data in accuracy]
    loss = history.losses_distributed
    loss_index = [data[0] for data in loss]
    loss_value = [data[1] for data in loss]
    plt.plot(accuracy_index, accuracy_value, "r-", label="Accuracy")
    plt.plot(loss_index, loss_value, "b-", label="Loss")
    plt.grid()
    plt.xlabel("Round")
    plt.ylabel("Accuracy (%)")
    plt.title("Handwritten Letters Classifier - Federated Accuracy")
    plt.show()


def server_main(server_address: str, num_rounds: int) -> fl.server.history.History:
    history = fl.server.start_server(
        server_address=server_address,
        config=fl.server.ServerConfig(num_rounds=num_rounds),
        strategy=CustomStrategy(min_available_clients=3, min_fit_clients=3, min_evaluate_clients=3),
    )
    plot(history)
    return history


class Client(fl.client.NumPyClient):
    def __init__(
        self, model: keras.Model, trainset: keras.utils.PyDataset, validset: keras.utils.PyDataset
    ):
        self.model = model
        self.trainset = trainset
        self.validset = validset

    def get_parameters(self, config: Dict[str, Scalar]) -> NDArrays:
        return self.model.get_weights()

    def fit(
        self, parameters: NDArrays, config: Dict[str, Scalar]
    ) -> Tuple[NDArrays, int, Dict[str, Scalar]]:
        self.model.set_weights(parameters)
        self.model.fit(self.trainset, epochs=1, batch_size=32)
        return self.model.get_weights(), len(self.trainset), {}

    def evaluate(
        self, parameters: NDArrays, config: Dict[str, Scalar]
    ) -> Tuple[float, int, Dict[str, Scalar]]:
        self.model.set_weights(parameters)
        loss, accuracy = self.model.evaluate(self.validset)
        return loss, len(self.validset), {"accuracy": accuracy}


class Letters(keras.utils.PyDataset):
    """Stand-in for image_dataset_from_directory: batches of 100x100x1 "letters" a..j."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 32) -> None:
        super().__init__()
        self.images, self.labels, self.batch_size = images, labels, batch_size

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        batch = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.images[batch], self.labels[batch]


def get_datasets(data_dir: str) -> tuple[Letters, Letters]:
    # Stand-in for keras.utils.image_dataset_from_directory(data_dir, validation_split=0.1,
    # subset="both", color_mode="grayscale", image_size=(100, 100), batch_size=32, ...):
    # each letter is a bright bar at its own height, under noise
    rng = np.random.default_rng(int(data_dir.rsplit("-", 1)[1]))
    labels = rng.integers(0, 10, 48)
    images = rng.uniform(0, 40, (48, 100, 100, 1)).astype("float32")
    for image, label in zip(images, labels):
        image[10 * label : 10 * label + 10, 20:80] += 200.0
    images /= 255.0
    return Letters(images[:32], labels[:32]), Letters(images[32:], labels[32:])


def client_main(server_address: str, data_dir: str) -> None:
    trainset, validset = get_datasets(data_dir)
    model = get_model()
    fl.client.start_numpy_client(
        server_address=server_address, client=Client(model, trainset, validset)
    )


def test_custom_strategy_saves_each_round_and_history_has_accuracy(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    address = free_address()
    clients = [lambda d=d: client_main(address, f"./data/client-{d}") for d in (1, 2, 3)]

    with caplog.at_level(INFO, logger="pollinate.flwr"):
        history = run_federation(lambda: server_main(address, NUM_ROUNDS), clients, 180)

    saved = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert saved == [f"model-round-{r}.keras" for r in range(1, NUM_ROUNDS + 1)]
    accuracy = history.metrics_distributed["accuracy"]
    assert [r for r, _ in accuracy] == list(range(1, NUM_ROUNDS + 1))
    assert accuracy[-1][1] > 0.3  # ten letters: chance is 0.1
    assert [r for r, _ in history.losses_distributed] == list(range(1, NUM_ROUNDS + 1))
    said = [r.getMessage() for r in caplog.records]
    assert f"Round {NUM_ROUNDS} accuracy aggregated from 3 clients: {accuracy[-1][1]}" in said
    assert f"Saving round {NUM_ROUNDS} model" in said
    # predict.py's load_model; compile=False: the server's copy never trained, so Keras
    # would refuse its (empty) optimizer state, with Flower as here
    model = keras.models.load_model(f"models/model-round-{NUM_ROUNDS}.keras", compile=False)
    assert model.predict(get_datasets("./data/client-2")[1][0][0], verbose=0).shape == (16, 10)
