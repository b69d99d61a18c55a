"""W2 with 100,000 nodes: cross-device MNIST where a node holds a few examples, or none.

The split, sampling and training of W2 (``../shared/bench/floor_cross_device.py``) over
``--nodes`` nodes: a Dirichlet(0.5) label split with numpy ``default_rng(0)``, ``--per-round``
nodes a round drawn by one ``default_rng(0)`` for the run as the floor draws them, and each
node's SGD (lr 0.05, batch 32, 1 epoch, order seeded ``round * 1_000_003 + node``). At 100,000
nodes MNIST's 60,000 images leave about half the nodes empty; a sampled empty node answers
with weight 0, which FedAvg sets aside as a failure: the mean is the floor's, where such a
node has weight 0. The split is kept as one owner per image, not as 100,000 index arrays.

Prints the time to load MNIST and split it (the app's cost), the start-up (the
run_simulation call to round 1), the rounds time, the command time (from after the imports),
peak RSS and the test accuracy. ``--quick``: 2 rounds of 10.

usage: python benchmarks/many_nodes.py DATA_DIR [--nodes N] [--per-round K] [--rounds R]
                                        [--threads T] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import logging
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pollinate import (
    ArrayRecord,
    ClientApp,
    Context,
    FedAvg,
    Grid,
    Message,
    MetricRecord,
    RecordDict,
    frameworks,
    run_simulation,
)
from pollinate.datasets import read_idx
from pollinate.server import RoundRecord, RunObserver

HERE = Path(__file__).resolve().parent
STARTED = time.perf_counter()
ALPHA, SEED, LR, BATCH = 0.5, 0, 0.05, 32

app = ClientApp()


class Net(nn.Module):
    """W2's model: Linear(784, 128), ReLU, Linear(128, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 128)
        self.out = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(x)))  # type: ignore[no-any-return]


def images(data_dir: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` ("train" or "t10k"), normalized as the floor does."""
    x = torch.tensor(
        read_idx(Path(data_dir) / f"{split}-images-idx3-ubyte.gz"), dtype=torch.float32
    )
    y = torch.tensor(read_idx(Path(data_dir) / f"{split}-labels-idx1-ubyte.gz"), dtype=torch.long)
    return ((x / 255.0 - 0.1307) / 0.3081).view(-1, 784), y


@functools.cache
def split(
    data_dir: str, num_nodes: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """The training images, their labels, and the split: images in node order, node offsets.

    The floor's Dirichlet cut, kept as each image's owner: node ``i``'s images are
    ``order[offsets[i]:offsets[i + 1]]``, ascending, as the floor's sorted index lists.
    """
    x, y = images(data_dir, "train")
    labels = y.numpy()
    rng = np.random.default_rng(SEED)
    owner = np.empty(len(labels), np.int64)
    for c in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        p = rng.dirichlet(np.full(num_nodes, ALPHA))
        cuts = (np.cumsum(p) * len(idx)).astype(np.int64)[:-1]
        counts = np.diff(np.concatenate([[0], cuts, [len(idx)]]))
        owner[idx] = np.repeat(np.arange(num_nodes), counts)
    order = np.argsort(owner, kind="stable")
    offsets = np.searchsorted(owner[order], np.arange(num_nodes + 1))
    return x, y, order, offsets


@app.train()
def train(msg: Message, context: Context) -> Message:
    """The floor's local step: SGD over the node's examples, one epoch, seeded order."""
    node = int(context.node_config["partition-id"])
    x, y, order, offsets = split(
        str(context.run_config["data-dir"]), int(context.node_config["num-partitions"])
    )
    idx = torch.from_numpy(order[offsets[node] : offsets[node + 1]])
    arrays = msg.content.arrays()
    if len(idx):
        net = Net()
        frameworks.torch.load_arrays(net, arrays)
        seed = int(msg.content["config"]["server-round"]) * 1_000_003 + node  # type: ignore[arg-type]
        local_sgd(net, x[idx], y[idx], seed)
        arrays = frameworks.torch.to_arrays(net)
    metrics = MetricRecord({"num-examples": len(idx)})  # 0: set aside, as weight 0 would be
    return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))


def local_sgd(net: Net, x: torch.Tensor, y: torch.Tensor, seed: int) -> None:
    """One epoch of plain SGD in batches of 32, in a seeded random order."""
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    loss = nn.CrossEntropyLoss()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    for i in range(0, len(y), BATCH):
        batch = perm[i : i + BATCH]
        opt.zero_grad()
        loss(net(x[batch]), y[batch]).backward()
        opt.step()


class FloorSampling(FedAvg):
    """FedAvg drawing its nodes as the floor does: one ``default_rng(seed)`` for the run."""

    def __init__(self, per_round: int) -> None:
        super().__init__(fraction_evaluate=0.0, min_train_nodes=1, seed=SEED)
        self._per_round = per_round
        self._rng = np.random.default_rng(SEED)

    def sample_nodes(self, grid: Grid, server_round: int, phase: int) -> list[int]:
        ids: Sequence[int] = grid.wait_for_nodes(self._per_round, self.wait_for_nodes_s)
        return [ids[int(i)] for i in self._rng.choice(len(ids), self._per_round, replace=False)]


class FirstRound(RunObserver):
    """When round 1 began."""

    def __init__(self) -> None:
        self.at: float | None = None

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        if self.at is None:
            self.at = time.perf_counter()

    def on_round(self, record: RoundRecord) -> None:
        return None


def accuracy(data_dir: str, arrays: ArrayRecord) -> float:
    """Test accuracy of the global model."""
    net = Net()
    frameworks.torch.load_arrays(net, arrays)
    x, y = images(data_dir, "t10k")
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 10 nodes")
    args = parser.parse_args()
    if args.quick:
        args.per_round, args.rounds = 10, 2
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HERE))  # "many_nodes:app" imports from here
    logging.getLogger("pollinate").setLevel(logging.ERROR)  # the empty nodes' weight-0 notes
    data_dir = str(Path(args.data_dir).resolve())
    loading = time.perf_counter()
    split(data_dir, args.nodes)  # the app's data, loaded before the run as the floor loads it
    loaded = time.perf_counter() - loading
    torch.manual_seed(0)
    first = FirstRound()
    called = time.perf_counter()
    result = run_simulation(
        client_app="many_nodes:app",
        app_dir=HERE,
        strategy=FloorSampling(args.per_round),
        num_rounds=args.rounds,
        initial_arrays=frameworks.torch.to_arrays(Net()),
        num_nodes=args.nodes,
        run_config={"data-dir": data_dir},
        observers=[first],
        verbose=False,
    )
    assert first.at is not None
    rounds_s = sum(r.wall_time_s for r in result.rounds if r.server_round > 0)
    ok = sum(r.train.num_ok for r in result.rounds if r.train is not None)
    print(f"W2 on {args.nodes:,} nodes, {args.per_round} a round, {args.rounds} rounds, inline")
    print(f"data and split {loaded:.2f} s (the app's, before the run)")
    print(f"start-up {(first.at - called) * 1e3:.1f} ms (run_simulation call to round 1)")
    print(f"rounds {rounds_s:.2f} s  ({ok} node replies with data)")
    print(f"command {time.perf_counter() - STARTED:.2f} s  peak RSS {peak_rss_mb():.0f} MB")
    print(f"accuracy {accuracy(args.data_dir, result.arrays):.4f}")


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
