"""W2 (cross-device-mnist): pollinate against the plain-loop floor, as ratios of adjacent runs.

Runs the floor script and ``pollinate run examples/cross-device-mnist`` alternately (floor
first), each in its own process with the same torch threads, so that the machine's drift hits
both sides of a pair alike. Each run prints its rounds time, its whole command's time
(interpreter start-up, imports and data included), its peak memory (the largest ``ru_maxrss``
among the command's processes) and its accuracy; each pair prints pollinate's rounds time over
the floor's ``fedavg_wall_s``, and the last line is the median of those ratios. ``--quick`` is
a smoke run of seconds: one pair, 50 clients, 10 a round, 2 rounds, the first 1,200 training
images (not W2).

usage: python benchmarks/cross_device.py DATA_DIR [--clients N] [--backend inline|process|ray]
                                         [--pairs P] [--workers W] [--threads T]
                                         [--floor PATH] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _mini_mnist import MINI_TRAIN, write_mini_mnist

REPO = Path(__file__).resolve().parents[1]
APP_DIR = REPO / "examples" / "cross-device-mnist"
DEFAULT_FLOOR = REPO.parent / "shared" / "bench" / "floor_cross_device.py"
GOAL_RATIO, GOAL_COMMAND_S = 1.10, 2.0


@dataclass(frozen=True, slots=True)
class Measurement:
    """One run: its rounds time, the whole command's time, its peak memory and accuracy."""

    side: str
    load_before: float
    rounds_s: float
    command_s: float
    peak_mb: float
    accuracy: float

    def line(self) -> str:
        """A printable summary."""
        return (
            f"{self.side:<9} rounds {self.rounds_s:7.2f} s  command {self.command_s:7.2f} s  "
            f"peak {self.peak_mb:6.0f} MB  accuracy {self.accuracy:.4f}  "
            f"(load {self.load_before:.2f})"
        )


@dataclass(frozen=True, slots=True)
class Workload:
    """What both sides run: the data, the federation's size and the torch threads."""

    data_dir: Path
    clients: int
    per_round: int
    rounds: int
    threads: int


def run_json(command: Sequence[str], threads: int) -> tuple[dict[str, object], float, float]:
    """Run ``command`` with ``threads`` BLAS/OpenMP threads; its last stdout line as JSON.

    Returns the JSON, the command's wall time (start-up and imports included) and its peak
    resident memory in MB: the largest of the command and the children it waited for.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({child.returncode}):\n{stderr[-3000:]}")
    lines = stdout.strip().splitlines()
    if not lines:
        sys.exit(f"{' '.join(command)} printed nothing on stdout:\n{stderr[-3000:]}")
    return json.loads(lines[-1]), elapsed, usage.ru_maxrss / 1024  # Linux: KB


def run_floor(floor: Path, work: Workload) -> Measurement:
    """The plain PyTorch loop: same split, sampling, steps and aggregation, no framework."""
    command = [
        *[sys.executable, str(floor), str(work.data_dir), "--threads", str(work.threads)],
        *["--clients", str(work.clients), "--per-round", str(work.per_round)],
        *["--rounds", str(work.rounds)],
    ]
    load = os.getloadavg()[0]
    out, elapsed, peak = run_json(command, work.threads)
    rounds_s, accuracy = float(out["fedavg_wall_s"]), float(out["test_acc"])  # type: ignore[arg-type]
    return Measurement("floor", load, rounds_s, elapsed, peak, accuracy)


def pollinate_command(work: Workload, backend: str, workers: int, out_dir: Path) -> list[str]:
    """``pollinate run examples/cross-device-mnist --json`` for ``work`` on ``backend``.

    Inline: one process with ``threads`` torch threads, like the floor. Any other backend:
    ``workers`` workers (or Ray actors) of ``threads`` threads. Either way the ClientApp's
    warm-up splits the data before round 1 in every process that runs nodes.
    """
    config = (
        f"data-dir={work.data_dir} nodes-per-round={work.per_round} num-server-rounds={work.rounds}"
    )
    federation = f"num-nodes={work.clients} backend={backend}"
    if backend == "inline":
        config += f" threads={work.threads}"
    else:
        config += " threads=0"
        federation += f" num-workers={workers} client-resources.num-cpus={work.threads}"
    return [
        *[sys.executable, "-m", "pollinate.cli", "run", str(APP_DIR), "--json"],
        *["--run-config", config, "--federation-config", federation, "--out", str(out_dir)],
    ]


def run_pollinate(work: Workload, backend: str, workers: int) -> Measurement:
    """The example app, run by the CLI in its own process (results to a throwaway folder)."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="w2-") as tmp:
        command = pollinate_command(work, backend, workers, Path(tmp) / "run")
        out, elapsed, peak = run_json(command, work.threads)
    final = out["final"]
    assert isinstance(final, dict)
    rounds_s = float(out["rounds_time_s"])  # type: ignore[arg-type]
    first = next(r for r in out["rounds"] if r["round"] == 1)  # type: ignore[attr-defined]
    print(f"pollinate first round {first['wall_time_s']:.2f} s", flush=True)
    return Measurement("pollinate", load, rounds_s, elapsed, peak, float(final["server.accuracy"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder with the four MNIST IDX .gz files")
    parser.add_argument("--clients", type=int, default=1000, help="nodes (default 1000)")
    parser.add_argument("--backend", choices=("inline", "process", "ray"), default="inline")
    parser.add_argument("--pairs", type=int, default=3, help="floor/pollinate pairs (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="process backend workers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides")
    parser.add_argument("--floor", type=Path, default=DEFAULT_FLOOR, help="floor script path")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 pair on mini MNIST")
    args = parser.parse_args()
    if not args.floor.is_file():
        sys.exit(f"floor script not found at {args.floor}: pass --floor PATH")
    if not (args.data_dir / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(
            f"no MNIST IDX .gz files in {args.data_dir}: see examples/cross-device-mnist/README.md"
        )
    if not args.quick:
        work = Workload(args.data_dir, args.clients, 100, 10, args.threads)
        report(run_pairs(args, work))
        return
    print(
        f"--quick: 1 pair, 50 clients, 10 a round, 2 rounds, 1 thread, the first "
        f"{MINI_TRAIN:,} training images: not W2",
        flush=True,
    )
    args.pairs = 1
    with tempfile.TemporaryDirectory(prefix="w2-mini-") as tmp:
        work = Workload(write_mini_mnist(args.data_dir, Path(tmp)), 50, 10, 2, 1)
        report(run_pairs(args, work))


def run_pairs(args: argparse.Namespace, work: Workload) -> list[tuple[float, float]]:
    """Floor and pollinate alternately, ``args.pairs`` times; each pair's ratio and gap."""
    print(
        f"W2: {work.clients:,} clients, {work.per_round} a round, {work.rounds} rounds, "
        f"{work.threads} torch thread(s); pollinate backend {args.backend}"
        + (f" with {args.workers} workers" if args.backend != "inline" else ""),
        flush=True,
    )
    pairs: list[tuple[float, float]] = []
    for pair in range(1, args.pairs + 1):
        floor = run_floor(args.floor, work)
        print(f"pair {pair}  {floor.line()}", flush=True)
        ours = run_pollinate(work, args.backend, args.workers)
        print(f"pair {pair}  {ours.line()}", flush=True)
        pairs.append((ours.rounds_s / floor.rounds_s, ours.command_s - floor.command_s))
        ratio, gap = pairs[-1]
        print(f"pair {pair}  ratio {ratio:.3f}  command {gap:+.2f} s", flush=True)
    return pairs


def report(pairs: list[tuple[float, float]]) -> None:
    """The pairs' ratios and command gaps, their medians, the verdicts; the ratio last."""
    ratios, gaps = [r for r, _ in pairs], [g for _, g in pairs]
    median, gap = statistics.median(ratios), statistics.median(gaps)
    verdict = "meets" if median <= GOAL_RATIO else "MISSES"
    shown = " ".join(f"{r:.3f}" for r in ratios)
    print(f"pair ratios {shown}; goal <= {GOAL_RATIO:.2f}: {verdict}")
    verdict = "meets" if gap <= GOAL_COMMAND_S else "MISSES"
    print(
        f"command gaps {' '.join(f'{g:+.2f}' for g in gaps)} s; median {gap:+.2f} s; "
        f"goal <= +{GOAL_COMMAND_S:.0f} s: {verdict}"
    )
    print(f"ratio {median:.3f}")


if __name__ == "__main__":
    main()
