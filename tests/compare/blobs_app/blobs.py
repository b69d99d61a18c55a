"""A tiny app for comparison tests: softmax regression on six 2-D blobs.

Partition ``p`` never holds classes ``2p`` and ``2p + 1``, so a model trained on it alone
never predicts them, and only federation can teach them.
"""

from __future__ import annotations

import numpy as np

from pollinate import ArrayRecord, ClientApp, FedAvg, MetricRecord, RecordDict, ServerApp
from pollinate.compare import Predictions, label_counts

CLASSES = 6
LEARNING_RATE = 0.5
ANGLES = 2 * np.pi * np.arange(CLASSES) / CLASSES
CENTERS = 5.0 * np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1)


def blobs(n: int, seed: int, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(classes, n)
    return CENTERS[y] + rng.normal(0.0, 0.6, (n, 2)), y


def partition(p: int) -> tuple[np.ndarray, np.ndarray]:
    return blobs(150, seed=p, classes=[c for c in range(CLASSES) if c // 2 != p % 3])


TEST = blobs(600, seed=99, classes=list(range(CLASSES)))


def logits(arrays: ArrayRecord, x: np.ndarray) -> np.ndarray:
    return x @ arrays["w"].numpy() + arrays["b"].numpy()


def sgd(arrays: ArrayRecord, x: np.ndarray, y: np.ndarray, steps: int, lr: float) -> ArrayRecord:
    w, b = arrays["w"].numpy().copy(), arrays["b"].numpy().copy()
    onehot = np.eye(CLASSES)[y]
    for _ in range(steps):
        z = x @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - onehot) / len(y)
        w -= lr * x.T @ grad
        b -= lr * grad.sum(0)
    return ArrayRecord({"w": w, "b": b})


client = ClientApp()


@client.train()
def train(msg, context):
    x, y = partition(int(context.node_config["partition-id"]))
    lr = msg.content.config()["lr"]  # sent by the strategy: compare must replay it
    arrays = sgd(msg.content.arrays(), x, y, int(context.run_config["local-steps"]), lr)
    metrics = MetricRecord({"num-examples": len(y)})
    return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))


@client.evaluate()
def evaluate(msg, context):
    x, y = partition(int(context.node_config["partition-id"]))
    accuracy = float(np.mean(logits(msg.content.arrays(), x).argmax(1) == y))
    return msg.reply(
        RecordDict({"metrics": MetricRecord({"num-examples": len(y), "accuracy": accuracy})})
    )


@client.query("label-counts")
def count_labels(msg, context):
    if not context.run_config["label-counts"]:
        raise RuntimeError("label counts are switched off in this run")
    _, y = partition(int(context.node_config["partition-id"]))
    return msg.reply(RecordDict({"metrics": label_counts(y)}))


server = ServerApp()


@server.main()
def main(grid, context):
    initial = ArrayRecord({"w": np.zeros((2, CLASSES)), "b": np.zeros(CLASSES)})
    strategy = FedAvg(
        fraction_train=float(context.run_config["fraction-train"]),
        fraction_evaluate=0.0,
        min_available_nodes=1,
        min_train_nodes=1,
        seed=0,
    )
    return strategy.start(
        grid,
        initial,
        num_rounds=int(context.run_config["num-server-rounds"]),
        train_config={"lr": LEARNING_RATE},
    )


def predict(arrays, run_config):
    x, y = TEST
    z = logits(arrays, x)
    p = np.exp(z - z.max(1, keepdims=True))
    loss = float(-np.mean(np.log(p[np.arange(len(y)), y] / p.sum(1))))
    return Predictions(y, z.argmax(1), loss=loss)
