"""Time to accuracy on an uneven population: synchronous FedAvg, FedAvg with a deadline and
over-selection, and FedBuff, on W2's 1,000 nodes, in simulated time.

W2 (``../shared/bench/WORKLOADS.md``: MNIST over ``--clients`` nodes by a Dirichlet(0.5)
label split, Linear(784,128)-ReLU-Linear(128,10), local SGD lr 0.05, batch 32, 1 epoch; the
split, model and client are ``vectorized_w2``'s) on a population model:

- speed: ``Pareto(median=1, alpha=--alpha)``, heavy-tailed (at alpha 1.5, 1.6% of nodes are
  10x slower than the median and 0.05% 100x; none is more than 1.6x faster);
- compute: ``--seconds-per-example`` (0.01) at speed 1, so a median node with W2's 60
  examples trains for 0.6 s; the timing is deterministic (no measured seconds);
- bandwidth: ``Bandwidth()``, log-normal around 5 MB/s down and 1 MB/s up (sigma 1): W2's
  407 KB model takes a median 0.08 s down and 0.4 s up;
- every node always available; ``--dropout`` (0.1) of tasks lost midway.

Strategies (each with the same ``--seed``; centralized test accuracy after every model):

- ``fedavg``: FedAvg, ``--per-round`` (100) nodes a round, waits for every reply;
- ``fedavg-deadline``: the same with ``over_selection=--over-selection`` (0.3: 130 sampled,
  the first 100 valid replies folded) and ``round_deadline_s=--deadline`` (60 s);
- ``fedbuff``: FedBuff with ``concurrency=--per-round`` nodes training at once and a buffer
  of ``--buffer`` (10), staleness ``polynomial(0.5)``.

Each runs ``--max-rounds`` (20) rounds, FedBuff as many versions as make twice their updates.
Prints a line per run, a markdown table (simulated time to first reach the target, time
from which it stays above it, models and updates used), writes ``--plot`` (accuracy
against simulated time, PNG; needs matplotlib) and, as its last line,
``ratio <FedBuff's simulated time to target / synchronous FedAvg's>`` (``ratio inf`` if
FedBuff never gets there).

``--quick``: a smoke run of seconds on a miniature MNIST (60 nodes, target 0.5): its figures
mean nothing.

usage: python benchmarks/time_to_accuracy.py MNIST_DIR [--clients 1000] [--per-round 100]
                                             [--max-rounds 20] [--target 0.8] [--alpha 1.5]
                                             [--dropout 0.1]
                                             [--seconds-per-example 0.01] [--buffer 10]
                                             [--over-selection 0.3] [--deadline 60]
                                             [--seed 0] [--threads 1] [--plot PATH] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from _mini_mnist import write_mini_mnist
from vectorized_w2 import Net, Split, declaration, load

from pollinate import ArrayRecord
from pollinate.frameworks import torch as torch_records
from pollinate.simulation import Bandwidth, Pareto, PopulationModel, run_simulation
from pollinate.strategy import FedAvg, FedBuff, Strategy

STRATEGIES = ("fedavg", "fedavg-deadline", "fedbuff")


@dataclass
class Curve:
    """One run: accuracy after each model, at its simulated time."""

    name: str
    times: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    updates: int = 0
    wall_s: float = 0.0

    def time_to(self, target: float) -> float:
        """Simulated seconds until the accuracy first reaches ``target`` (inf: never)."""
        for t, accuracy in zip(self.times, self.accuracies, strict=True):
            if accuracy >= target:
                return t
        return math.inf

    def holds_from(self, target: float) -> float:
        """Simulated seconds from which the accuracy never falls below ``target`` again."""
        held = math.inf
        for t, accuracy in zip(self.times, self.accuracies, strict=True):
            if accuracy < target:
                held = math.inf
            elif math.isinf(held):
                held = t
        return held

    def versions_to(self, target: float) -> int | None:
        """How many models were made until ``target`` (None: never)."""
        for i, accuracy in enumerate(self.accuracies):
            if accuracy >= target:
                return i
        return None


def accuracy_fn(data: Split) -> Callable[[int, ArrayRecord], dict[str, float]]:
    """Centralized test accuracy of each model."""
    net = Net()
    x_test, y_test = data[2], data[3]

    def evaluate(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        net.load_state_dict(torch_records.to_state_dict(arrays))
        with torch.no_grad():
            accuracy = float((net(x_test).argmax(1) == y_test).float().mean())
        return {"accuracy": accuracy}

    return evaluate


def strategy_for(name: str, args: argparse.Namespace) -> tuple[Strategy, int]:
    """The strategy named, and its cap of model versions."""
    fraction = args.per_round / args.clients
    common = {"fraction_evaluate": 0.0, "seed": args.seed}
    if name == "fedavg":
        return FedAvg(fraction_train=fraction, min_train_nodes=1, **common), args.max_rounds
    if name == "fedavg-deadline":
        strategy = FedAvg(
            fraction_train=fraction,
            min_train_nodes=1,
            over_selection=args.over_selection,
            round_deadline_s=args.deadline,
            **common,
        )
        return strategy, args.max_rounds
    fedbuff = FedBuff(buffer_size=args.buffer, concurrency=args.per_round, seed=args.seed)
    return fedbuff, args.max_rounds * args.per_round // args.buffer * 2  # twice the updates


def run(name: str, data: Split, args: argparse.Namespace) -> Curve:
    """One simulation of ``name`` on the population; its accuracy curve in simulated time."""
    torch.manual_seed(args.seed)
    initial = torch_records.to_arrays(Net())
    population = PopulationModel(
        speed=Pareto(median=1.0, alpha=args.alpha),
        bandwidth=Bandwidth(),
        dropout=args.dropout,
        seconds_per_example=args.seconds_per_example,
        seed=args.seed,
    )
    strategy, cap = strategy_for(name, args)
    started = time.perf_counter()
    result = run_simulation(
        client_app=declaration(data).client_app(),
        num_nodes=args.clients,
        strategy=strategy,
        num_rounds=cap,
        initial_arrays=initial,
        evaluate_fn=accuracy_fn(data),
        population=population,
        backend="vectorized",
        run_id=1,
        verbose=False,
    )
    curve = Curve(name, wall_s=time.perf_counter() - started)
    for record in result.rounds:
        curve.times.append(record.simulated_time_s or 0.0)
        curve.accuracies.append(float(record.server_metrics["accuracy"]))
        if record.train is not None:
            curve.updates += record.train.num_ok
    return curve


def table(curves: list[Curve], target: float) -> str:
    """A markdown table: simulated time to target, models and updates used, wall time."""
    rows = [
        f"| strategy | simulated time to {target:.0%} | stays above from | models "
        "| updates (all) | final accuracy | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for curve in curves:
        to = curve.time_to(target)
        versions = curve.versions_to(target)
        rows.append(
            f"| {curve.name} | {_duration(to)} | {_duration(curve.holds_from(target))} "
            f"| {versions if versions is not None else '-'} "
            f"| {curve.updates:,} | {curve.accuracies[-1]:.2%} | {curve.wall_s:.1f} s |"
        )
    return "\n".join(rows)


def _duration(seconds: float) -> str:
    if math.isinf(seconds):
        return "never"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:04.1f} s" if minutes else f"{rest:.1f} s"


def plot(curves: list[Curve], target: float, path: str) -> None:
    """Accuracy against simulated time, a line per strategy, the target dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for curve in curves:
        ax.plot([t / 60 for t in curve.times], curve.accuracies, label=curve.name)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("simulated time (minutes)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--max-rounds", type=int, default=20)
    parser.add_argument("--target", type=float, default=0.80)
    parser.add_argument("--alpha", type=float, default=1.5)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--seconds-per-example", type=float, default=0.01)
    parser.add_argument("--buffer", type=int, default=10)
    parser.add_argument("--over-selection", type=float, default=0.3)
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot")
    parser.add_argument("--quick", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("pollinate").setLevel(logging.ERROR)  # dropouts are expected here: 10%
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir
        if args.quick:
            data_dir = str(write_mini_mnist(Path(args.data_dir), Path(tmp)))
            args.clients, args.per_round, args.buffer = 60, 10, 3
            args.max_rounds, args.target = 4, 0.5
        data = load(data_dir, args.clients)
        curves = []
        for name in STRATEGIES:
            curve = run(name, data, args)
            curves.append(curve)
            print(
                f"{name}: {_duration(curve.time_to(args.target))} simulated to "
                f"{args.target:.0%}, final {curve.accuracies[-1]:.2%}, {curve.wall_s:.1f} s wall",
                flush=True,
            )
    print()
    print(table(curves, args.target))
    print()
    print("command: python benchmarks/time_to_accuracy.py " + shlex.join(argv))
    if args.plot:
        plot(curves, args.target, args.plot)
        print(f"plot: {args.plot}")
    fedbuff, fedavg = curves[2].time_to(args.target), curves[0].time_to(args.target)
    print(f"ratio {fedbuff / fedavg if math.isfinite(fedbuff) else math.inf:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
