"""W2 rounds: the sequential floor loop against pollinate's vectorized trainer, interleaved.

Both sides run W2 exactly (``../shared/bench/floor_cross_device.py``: the Dirichlet split,
the sampling generator, each client's shuffling seed, SGD lr 0.05, batch 32, 1 epoch,
FedAvg by example count) in this process with the same torch threads: ``floor`` is the
floor's loop (a fresh Net and ``torch.optim.SGD`` per client), ``vectorized`` sends each
round's sampled clients to the vectorized backend as train tasks. Prints one line per run
(rounds time and test accuracy), each pair's ratio, and as the last line
``ratio <median rounds-time ratio vectorized/floor>`` (after ``cpu-ratio``, the same for
the process's CPU time, steadier on a shared machine).

With ``--run-simulation`` the pairs are instead whole ``run_simulation`` calls of the same
declaration on the inline and the vectorized backend (FedAvg's own sampling, not the
floor's; server and strategy included), and the ratio is vectorized/inline.

usage: python benchmarks/vectorized_w2.py MNIST_DIR [--clients 1000] [--per-round 100]
                                          [--rounds 10] [--pairs 3] [--threads 1]
                                          [--run-simulation]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from pollinate import ConfigRecord, Context, Message, RecordDict
from pollinate.datasets import read_idx
from pollinate.frameworks import torch as torch_records
from pollinate.simulation import ClientAppSource, Task, make_backend, run_simulation
from pollinate.simulation.vectorized import SGD, VectorizedClient
from pollinate.strategy import FedAvg

BUDGET_MB = 1024
Split = tuple[Tensor, Tensor, Tensor, Tensor, list[np.ndarray]]


class Net(nn.Module):
    """W2's model: Linear(784, 128)-ReLU-Linear(128, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 128)
        self.out = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.relu(self.fc(x)))


def load(data_dir: str, clients: int) -> Split:
    """MNIST normalized as the floor does, and its Dirichlet(0.5) split over ``clients``."""

    def images(name: str) -> Tensor:
        x = torch.tensor(read_idx(f"{data_dir}/{name}-images-idx3-ubyte.gz"), dtype=torch.float32)
        return ((x / 255.0 - 0.1307) / 0.3081).view(-1, 784)

    def labels(name: str) -> Tensor:
        return torch.tensor(read_idx(f"{data_dir}/{name}-labels-idx1-ubyte.gz"), dtype=torch.long)

    ytr = labels("train")
    return images("train"), ytr, images("t10k"), labels("t10k"), split(ytr.numpy(), clients)


def split(labels: np.ndarray, clients: int, alpha: float = 0.5, seed: int = 0) -> list[np.ndarray]:
    """The floor's Dirichlet label partition, line for line."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
    for c in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        p = rng.dirichlet(np.full(clients, alpha))
        cuts = (np.cumsum(p) * len(idx)).astype(np.int64)[:-1]
        for i, chunk in enumerate(np.split(idx, cuts)):
            if len(chunk):
                parts[i].append(chunk)
    return [np.sort(np.concatenate(p)) if p else np.empty(0, np.int64) for p in parts]


def floor_round(g: Net, data: Split, picked: np.ndarray, r: int) -> None:
    """One round of the floor's loop, updating ``g`` in place."""
    xtr, ytr, _, _, parts = data
    states, ns = [], []
    for pid in picked:
        idx = torch.from_numpy(parts[int(pid)])
        net = Net()
        net.load_state_dict(g.state_dict())
        x, y = xtr[idx], ytr[idx]
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        gen = torch.Generator().manual_seed(r * 1_000_003 + int(pid))
        if len(y):
            perm = torch.randperm(len(y), generator=gen)
            for i in range(0, len(y), 32):
                b = perm[i : i + 32]
                opt.zero_grad()
                nn.functional.cross_entropy(net(x[b]), y[b]).backward()
                opt.step()
        states.append(net.state_dict())
        ns.append(len(idx))
    tot = float(sum(ns))
    g.load_state_dict(
        {k: sum(s[k] * (n / tot) for s, n in zip(states, ns, strict=True)) for k in states[0]}
    )


def declaration(data: Split) -> VectorizedClient:
    """W2's client: Net, SGD lr 0.05, batch 32, 1 epoch, on its partition of the split."""
    xtr, ytr, _, _, parts = data

    def node_data(context: Context) -> tuple[Tensor, Tensor]:
        idx = torch.from_numpy(parts[int(context.node_config["partition-id"])])
        return xtr[idx], ytr[idx]

    return VectorizedClient(Net, node_data, SGD(lr=0.05))


def vectorized_rounder(data: Split) -> Callable[[Net, np.ndarray, int], None]:
    """One round on the vectorized backend: the sampled clients as train tasks, then FedAvg."""
    backend = make_backend("vectorized", memory_budget_mb=BUDGET_MB)
    backend.start(ClientAppSource(app=declaration(data).client_app()))

    def run_round(g: Net, picked: np.ndarray, r: int) -> None:
        content = RecordDict(
            {"arrays": torch_records.to_arrays(g), "config": ConfigRecord({"server-round": r})}
        )
        tasks = [
            Task(
                Message.create(content, int(p) + 1, "train"),
                Context(0, int(p) + 1, {"partition-id": int(p)}),
            )
            for p in picked
        ]
        replies = [result.reply for result in backend.run(tasks, None)]
        ns = [float(reply.content["metrics"]["num-examples"]) for reply in replies]
        tot = sum(ns)
        names = list(replies[0].content.arrays())
        g.load_state_dict(
            {
                k: torch.from_numpy(
                    sum(
                        reply.content.arrays()[k].numpy() * (n / tot)
                        for reply, n in zip(replies, ns, strict=True)
                    )
                )
                for k in names
            }
        )

    return run_round


def run(kind: str, data: Split, args: argparse.Namespace) -> tuple[float, float, float]:
    """Rounds time (wall and CPU seconds) and test accuracy of one W2 run."""
    torch.manual_seed(0)
    g = Net()
    rng = np.random.default_rng(0)
    step = vectorized_rounder(data) if kind == "vectorized" else None
    started, cpu_started = time.perf_counter(), time.process_time()
    for r in range(1, args.rounds + 1):
        picked = rng.choice(args.clients, args.per_round, replace=False)
        if step is None:
            floor_round(g, data, picked, r)
        else:
            step(g, picked, r)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    with torch.no_grad():
        accuracy = float((g(data[2]).argmax(1) == data[3]).float().mean())
    return seconds, cpu, accuracy


def simulate(backend: str, data: Split, args: argparse.Namespace) -> tuple[float, float, float]:
    """Wall and CPU seconds and test accuracy of one ``run_simulation`` of W2's declaration."""
    torch.manual_seed(0)
    initial = torch_records.to_arrays(Net())
    strategy = FedAvg(
        fraction_train=args.per_round / args.clients, fraction_evaluate=0.0, min_train_nodes=1
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    result = run_simulation(
        client_app=declaration(data).client_app(),
        num_nodes=args.clients,
        strategy=strategy,
        num_rounds=args.rounds,
        initial_arrays=initial,
        backend=backend,
        run_id=1,
        verbose=False,
    )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    g = Net()
    g.load_state_dict(torch_records.to_state_dict(result.arrays))
    with torch.no_grad():
        accuracy = float((g(data[2]).argmax(1) == data[3]).float().mean())
    return seconds, cpu, accuracy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--per-round", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--run-simulation", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load(args.data_dir, args.clients)
    # torch imports torch._dynamo (about a second) when the first optimizer is built: pay it
    # before pair 0, or that pair's floor carries it and flatters the vectorized side.
    torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    for pair in range(args.pairs):
        if args.run_simulation:
            base = "inline    "
            floor_s, floor_cpu, floor_acc = simulate("inline", data, args)
            vec_s, vec_cpu, vec_acc = simulate("vectorized", data, args)
        else:
            base = "floor     "
            floor_s, floor_cpu, floor_acc = run("floor", data, args)
            vec_s, vec_cpu, vec_acc = run("vectorized", data, args)
        for kind, wall, cpu, acc in (
            (base, floor_s, floor_cpu, floor_acc),
            ("vectorized", vec_s, vec_cpu, vec_acc),
        ):
            print(f"pair {pair} {kind} rounds {wall:.3f} s (CPU {cpu:.3f} s)  accuracy {acc:.4f}")
        ratios.append(vec_s / floor_s)
        cpu_ratios.append(vec_cpu / floor_cpu)
        print(f"pair {pair} ratio {ratios[-1]:.3f} (CPU {cpu_ratios[-1]:.3f})", flush=True)
    print(f"cpu-ratio {statistics.median(cpu_ratios):.3f}")
    print(f"ratio {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
