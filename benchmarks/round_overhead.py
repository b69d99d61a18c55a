"""Round overhead: seconds per FedAvg round when the clients do no work at all.

A no-op ClientApp answers every train message with the arrays it got and ``num-examples``
1, so what is left is the framework's own cost: sampling, messages, contexts, transport,
reply checks and aggregation. Cases: a tiny model on 10, 200 and 1,000 nodes, and a 100 MB
model on 10 nodes; inline backend, and the process backend for the 10-node cases.

usage: python benchmarks/round_overhead.py [--rounds N] [--no-process]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pollinate import (
    ArrayRecord,
    ClientApp,
    Context,
    FedAvg,
    Message,
    MetricRecord,
    RecordDict,
    run_simulation,
)

HERE = Path(__file__).resolve().parent
MB = 1_000_000

app = ClientApp()


@app.train()
def echo(msg: Message, context: Context) -> Message:
    """Answer with the received arrays, weighted 1: no training, only the framework's cost."""
    metrics = MetricRecord({"num-examples": 1})
    return msg.reply(RecordDict({"arrays": msg.content.arrays(), "metrics": metrics}))


@dataclass(frozen=True, slots=True)
class Case:
    """One measurement: how many nodes, how big a model, which backend."""

    num_nodes: int
    model_bytes: int
    backend: str
    flower_s: float | None = None

    @property
    def label(self) -> str:
        size = "tiny" if self.model_bytes < MB else f"{self.model_bytes // MB} MB"
        return f"{self.backend:<7} {self.num_nodes:>5} nodes  {size:>7} model"

    @property
    def goal_s(self) -> float | None:
        """The inline goal: 10 ms + 0.05 ms per node (no goal set for the process backend)."""
        return 0.010 + 0.00005 * self.num_nodes if self.backend == "inline" else None


def model(num_bytes: int) -> ArrayRecord:
    """A float32 model of about ``num_bytes``: one small layer, or four equal big ones."""
    if num_bytes < MB:
        return ArrayRecord({"w": np.ones((10, 10), np.float32), "b": np.ones(10, np.float32)})
    per_array = num_bytes // 4 // 4
    return ArrayRecord({f"layer{i}": np.ones(per_array, np.float32) for i in range(4)})


def seconds_per_round(case: Case, rounds: int) -> list[float]:
    """Run ``rounds`` FedAvg rounds with every node sampled; wall time of each round."""
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=case.num_nodes,
        min_available_nodes=case.num_nodes,
    )
    result = run_simulation(
        client_app="round_overhead:app",
        app_dir=HERE,
        strategy=strategy,
        num_rounds=rounds,
        initial_arrays=model(case.model_bytes),
        num_nodes=case.num_nodes,
        backend=case.backend,
    )
    return [r.wall_time_s for r in result.rounds if r.server_round > 0]


def numpy_floor(case: Case) -> float:
    """A plain numpy weighted mean of ``num_nodes`` models of the case's size: the memory floor."""
    arrays = model(case.model_bytes).to_numpy()
    began = time.perf_counter()
    for a in arrays:
        total = np.zeros_like(a)
        for _ in range(case.num_nodes):
            total += a
        total /= case.num_nodes
    return time.perf_counter() - began


def report(case: Case, times: list[float]) -> str:
    """One line: the median, the spread, and the comparison with the goal and Flower."""
    median = statistics.median(times)
    spread = f"min {min(times) * 1e3:.2f}, n={len(times)}"
    line = f"{case.label}  {median * 1e3:9.2f} ms/round ({spread})"
    if case.goal_s is not None:
        verdict = "meets" if median <= case.goal_s else "MISSES"
        line += f"  goal {case.goal_s * 1e3:.2f} ms: {verdict} ({median / case.goal_s:.2f}x)"
    if case.model_bytes >= MB:
        line += f"  numpy floor {numpy_floor(case) * 1e3:.0f} ms"
    if case.flower_s is not None:
        line += f"  Flower 1.41: {case.flower_s:.1f} s"
    return line


def cases(with_process: bool) -> list[Case]:
    """The cases of the issue, with Flower 1.41's figures where it has them."""
    out = [
        Case(10, 0, "inline", 0.2),
        Case(200, 0, "inline", 1.0),
        Case(1000, 0, "inline"),
        Case(10, 100 * MB, "inline", 3.0),
    ]
    if with_process:
        out += [Case(10, 0, "process", 0.2), Case(10, 100 * MB, "process", 3.0)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per case (median taken)")
    parser.add_argument("--no-process", action="store_true", help="skip the process backend")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))  # so that "round_overhead:app" imports here and in workers
    print(f"pollinate round overhead, {args.rounds} rounds per case, median")
    for case in cases(with_process=not args.no_process):
        rounds = args.rounds if case.model_bytes < MB else max(3, args.rounds // 2)
        print(report(case, seconds_per_round(case, rounds)), flush=True)


if __name__ == "__main__":
    main()
