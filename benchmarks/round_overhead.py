"""Round overhead: seconds per FedAvg round when the clients do no work at all.

A no-op ClientApp answers every train message with the arrays it got and ``num-examples``
1, so what is left is the framework's own cost: sampling, messages, contexts, transport,
reply checks and aggregation. Cases: a tiny model on 10, 200 and 1,000 nodes, and a 100 MB
model on 10 nodes; inline backend, and the process backend for the 10-node cases. Big
models are also timed against a numpy floor: FedAvg's own fold, with nothing around it.

Scale cases sample 100 nodes a round from 1,000 and from 100,000 (virtual nodes must cost
nothing until sampled): each also reports its start-up (the run_simulation call to round
1's start) and the memory the run holds after its last round (tracemalloc, in a second run
of its own), with a no-op client and with one that keeps a small ``context.state``.
``--quick`` is a smoke run of a few seconds: 10 nodes, a tiny and a 1 MB model, 2 rounds,
and 100 sampled of 100,000.

usage: python benchmarks/round_overhead.py [--rounds N] [--no-process] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
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
from pollinate.server import RoundRecord, RunObserver

HERE = Path(__file__).resolve().parent
MB = 1_000_000
CHUNK = 1 << 18
"""Elements folded per step, as pollinate's WeightedSum folds them."""
FLOWER_QUOTED = (
    "Flower 1.41, quoted from docs/performance.md (its simulation, Ray backend, measured on "
    "the 2-core development machine in 2026-11; not run here): 0.2 s/round with 10 nodes, "
    "1.0 s with 200 nodes, 3.0 s with 10 nodes and a 100 MB model"
)

app = ClientApp()


@app.train()
def echo(msg: Message, context: Context) -> Message:
    """Answer with the received arrays, weighted 1: no training, only the framework's cost."""
    metrics = MetricRecord({"num-examples": 1})
    return msg.reply(RecordDict({"arrays": msg.content.arrays(), "metrics": metrics}))


stateful = ClientApp()


@stateful.train()
def echo_keeping_state(msg: Message, context: Context) -> Message:
    """The echo, also counting its visits in ``context.state`` with a 64-float array."""
    seen = context.state.get("visits")
    count = seen["n"] if isinstance(seen, MetricRecord) else 0
    context.state["visits"] = MetricRecord({"n": count + 1 if isinstance(count, int) else 1})
    context.state["last"] = ArrayRecord({"w": np.zeros(64, np.float32)})
    return echo(msg, context)


@dataclass(frozen=True, slots=True)
class ScaleCase:
    """``sampled`` nodes a round out of ``num_nodes``, with a no-op or a state-keeping client."""

    num_nodes: int
    sampled: int
    keeps_state: bool

    @property
    def label(self) -> str:
        client = "keeps state" if self.keeps_state else "no-op"
        return f"inline  {self.num_nodes:>6} nodes  {self.sampled} sampled  {client:<11}"


class RoundClock(RunObserver):
    """When round 1 began, and the memory traced at the end of each round."""

    def __init__(self) -> None:
        self.first_round_at: float | None = None
        self.traced: list[int] = []

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        if self.first_round_at is None:
            self.first_round_at = time.perf_counter()

    def on_round(self, record: RoundRecord) -> None:
        if tracemalloc.is_tracing():
            self.traced.append(tracemalloc.get_traced_memory()[0])


def run_scale_case(case: ScaleCase, rounds: int, clock: RoundClock) -> list[float]:
    """Run ``rounds`` rounds sampling ``case.sampled`` nodes; the wall time of each round."""
    strategy = FedAvg(fraction_train=case.sampled / case.num_nodes, fraction_evaluate=0.0)
    result = run_simulation(
        client_app=f"round_overhead:{'stateful' if case.keeps_state else 'app'}",
        app_dir=HERE,
        strategy=strategy,
        num_rounds=rounds,
        initial_arrays=model(0),
        num_nodes=case.num_nodes,
        observers=[clock],
        verbose=False,
    )
    return [r.wall_time_s for r in result.rounds if r.server_round > 0]


def report_scale(case: ScaleCase, rounds: int) -> str:
    """One line: per-round median, start-up, and memory held after the last round."""
    clock = RoundClock()
    called = time.perf_counter()
    times = run_scale_case(case, rounds, clock)
    assert clock.first_round_at is not None
    startup = clock.first_round_at - called
    traced = RoundClock()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    run_scale_case(case, rounds, traced)
    peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    held, peak = (traced.traced[-1] - before) / MB, (peak_bytes - before) / MB
    median = statistics.median(times)
    return (
        f"{case.label}  {median * 1e3:7.2f} ms/round (min {min(times) * 1e3:.2f}, "
        f"n={len(times)})  start-up {startup * 1e3:.1f} ms  memory held {held:.2f} MB "
        f"(peak {peak:.2f} MB)"
    )


def scale_cases(quick: bool) -> list[ScaleCase]:
    """100 sampled of 1,000 and of 100,000 nodes (``quick``: of 100,000, no-op client only)."""
    if quick:
        return [ScaleCase(100_000, 100, keeps_state=False)]
    return [ScaleCase(n, 100, keeps) for keeps in (False, True) for n in (1_000, 100_000)]


@dataclass(frozen=True, slots=True)
class Case:
    """One measurement: how many nodes, how big a model, which backend."""

    num_nodes: int
    model_bytes: int
    backend: str

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
        verbose=False,  # the table below is the report
    )
    return [r.wall_time_s for r in result.rounds if r.server_round > 0]


def numpy_floor(case: Case) -> float:
    """FedAvg's fold of ``num_nodes`` replies in plain numpy, with nothing around it.

    The same arithmetic as pollinate's ``WeightedSum``: float64 sums, each reply weighted
    relative to the first one's weight, the mean cast back to the array's dtype, CHUNK
    elements at a time.
    """
    arrays = [a.reshape(-1) for a in model(case.model_bytes).to_numpy()]
    weights = [1.0] * case.num_nodes  # the echo app's num-examples
    began = time.perf_counter()
    for a in arrays:
        total = np.zeros(a.size, np.float64)
        for weight in weights:
            relative = np.float64(weight / weights[0])
            for start in range(0, a.size, CHUNK):
                chunk = a[start : start + CHUNK]
                total[start : start + CHUNK] += np.multiply(chunk, relative, dtype=np.float64)
        relative_total = np.float64(sum(w / weights[0] for w in weights))
        mean = np.empty(a.size, a.dtype)
        for start in range(0, a.size, CHUNK):
            mean[start : start + CHUNK] = total[start : start + CHUNK] / relative_total
    return time.perf_counter() - began


def report(case: Case, times: list[float]) -> str:
    """One line: the median, the spread, and its ratios to the goal and the numpy floor."""
    median = statistics.median(times)
    spread = f"min {min(times) * 1e3:.2f}, n={len(times)}"
    line = f"{case.label}  {median * 1e3:9.2f} ms/round ({spread})"
    if case.goal_s is not None:
        verdict = "meets" if median <= case.goal_s else "MISSES"
        line += f"  goal {case.goal_s * 1e3:.2f} ms: {verdict} ({median / case.goal_s:.2f}x)"
    if case.model_bytes >= MB:
        floor = numpy_floor(case)
        line += f"  numpy floor {floor * 1e3:.1f} ms ({median / floor:.1f}x)"
    return line


def cases(with_process: bool, quick: bool) -> list[Case]:
    """The cases of the issue (``quick``: 10 nodes, a tiny and a 1 MB model)."""
    if quick:
        out = [Case(10, 0, "inline"), Case(10, MB, "inline")]
        return [*out, Case(10, 0, "process")] if with_process else out
    out = [
        Case(10, 0, "inline"),
        Case(200, 0, "inline"),
        Case(1000, 0, "inline"),
        Case(10, 100 * MB, "inline"),
    ]
    if with_process:
        out += [Case(10, 0, "process"), Case(10, 100 * MB, "process")]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per case (median taken)")
    parser.add_argument("--no-process", action="store_true", help="skip the process backend")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 small cases, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 2
    sys.path.insert(0, str(HERE))  # so that "round_overhead:app" imports here and in workers
    print(f"pollinate round overhead, {args.rounds} rounds per case, median")
    for case in cases(with_process=not args.no_process, quick=args.quick):
        rounds = args.rounds if case.model_bytes < 10 * MB else max(3, args.rounds // 2)
        print(report(case, seconds_per_round(case, rounds)), flush=True)
    for scale_case in scale_cases(args.quick):
        print(report_scale(scale_case, args.rounds), flush=True)
    print(FLOWER_QUOTED)


if __name__ == "__main__":
    main()
