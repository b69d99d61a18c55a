"""W1 (skewed-mnist): pollinate against the plain-loop floor, as ratios of adjacent runs.

Runs the floor script and ``pollinate run examples/skewed-mnist`` alternately (floor first),
each in its own process with the same torch threads, so that the machine's drift hits both
sides of a pair alike. The figure is pollinate's rounds time over the floor's
``fedavg_wall_s`` for each adjacent pair; the last line is their median. ``--quick`` is a
smoke run of seconds: one pair, 1 thread, the first 1,200 training images (not W1).

usage: python benchmarks/skewed_mnist.py DATA_DIR [--pairs N] [--threads T]
                                         [--backend inline|process] [--floor PATH] [--quick]
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from _mini_mnist import MINI_TRAIN, write_mini_mnist

REPO = Path(__file__).resolve().parents[1]
APP_DIR = REPO / "examples" / "skewed-mnist"
DEFAULT_FLOOR = REPO.parent / "shared" / "bench" / "floor_skewed_mnist.py"
SUBSETS = ("1-3-7", "2-5-8", "4-6-9")
GOAL_RATIO, GOAL_ACCURACY, GOAL_SUBSET = 1.10, 0.955, 0.93


@dataclass(frozen=True, slots=True)
class Measurement:
    """One run: its rounds time, the whole command's wall time, and the final accuracies."""

    side: str
    load_before: float
    rounds_s: float
    command_s: float
    accuracy: float
    subsets: Mapping[str, float]

    def line(self) -> str:
        """A printable summary."""
        subsets = " ".join(f"{k}={v:.4f}" for k, v in self.subsets.items())
        return (
            f"{self.side:<9} rounds {self.rounds_s:7.2f} s  command {self.command_s:7.2f} s  "
            f"accuracy {self.accuracy:.4f}  missing {subsets}  (load {self.load_before:.2f})"
        )

    @property
    def meets_quality(self) -> bool:
        """W1's expected quality: >= 95.5% overall and >= 93% on each missing subset."""
        return self.accuracy >= GOAL_ACCURACY and min(self.subsets.values()) >= GOAL_SUBSET


def run_json(command: Sequence[str], threads: int) -> tuple[dict[str, object], float]:
    """Run ``command`` with ``threads`` BLAS/OpenMP threads; its last stdout line as JSON.

    Returns the JSON and the command's wall time, start-up and imports included.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        sys.exit(f"{' '.join(command)} printed nothing on stdout:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1]), elapsed


def run_floor(floor: Path, data_dir: Path, threads: int) -> Measurement:
    """The plain PyTorch loop: same data, model, steps and aggregation, no framework."""
    command = [sys.executable, str(floor), str(data_dir), "--threads", str(threads)]
    load = os.getloadavg()[0]
    out, elapsed = run_json(command, threads)
    scores = out["fedavg"]
    assert isinstance(scores, dict)
    subsets = {s: float(scores[str([int(d) for d in s.split("-")])]) for s in SUBSETS}
    rounds_s = float(out["fedavg_wall_s"])  # type: ignore[arg-type]
    return Measurement("floor", load, rounds_s, elapsed, scores["overall"], subsets)


def pollinate_command(data_dir: Path, threads: int, backend: str, out_dir: Path) -> list[str]:
    """``pollinate run examples/skewed-mnist --json`` with the data, threads and backend set.

    Inline: one process with ``threads`` torch threads, like the floor. Process: ``threads``
    single-threaded workers, each reading its own data (so the server preloads nothing).
    """
    if backend == "inline":
        config, federation = f"threads={threads}", "backend=inline"
    else:
        config, federation = (
            "threads=0 preload-data=false",
            f"backend={backend} num-workers={threads}",
        )
    return [
        *[sys.executable, "-m", "pollinate.cli", "run", str(APP_DIR), "--json"],
        *["--run-config", f"data-dir={data_dir} {config}", "--federation-config", federation],
        *["--out", str(out_dir)],
    ]


def run_pollinate(data_dir: Path, threads: int, backend: str) -> Measurement:
    """The example app, run by the CLI in its own process (results to a throwaway folder)."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="w1-") as tmp:
        command = pollinate_command(data_dir, threads, backend, Path(tmp) / "run")
        out, elapsed = run_json(command, threads)
    final = out["final"]
    assert isinstance(final, dict)
    subsets = {s: float(final[f"server.accuracy-missing-{s}"]) for s in SUBSETS}
    rounds_s = float(out["rounds_time_s"])  # type: ignore[arg-type]
    return Measurement("pollinate", load, rounds_s, elapsed, final["server.accuracy"], subsets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder with the four MNIST IDX .gz files")
    parser.add_argument("--pairs", type=int, default=3, help="floor/pollinate pairs (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    parser.add_argument("--backend", choices=("inline", "process"), default="inline")
    parser.add_argument("--floor", type=Path, default=DEFAULT_FLOOR, help="floor script path")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 pair on mini MNIST")
    args = parser.parse_args()
    if not args.floor.is_file():
        sys.exit(f"floor script not found at {args.floor}: pass --floor PATH")
    if not (args.data_dir / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"no MNIST IDX .gz files in {args.data_dir}: see examples/skewed-mnist/README.md")
    if not args.quick:
        report(run_pairs(args, args.data_dir))
        return
    print(
        f"--quick: 1 pair, 1 thread, the first {MINI_TRAIN:,} training images: not W1", flush=True
    )
    args.pairs, args.threads = 1, 1
    with tempfile.TemporaryDirectory(prefix="w1-mini-") as tmp:
        report(run_pairs(args, write_mini_mnist(args.data_dir, Path(tmp))))


def run_pairs(args: argparse.Namespace, data_dir: Path) -> list[float]:
    """Floor and pollinate alternately, ``args.pairs`` times; each pair's ratio."""
    ratios: list[float] = []
    for pair in range(1, args.pairs + 1):
        floor = run_floor(args.floor, data_dir, args.threads)
        print(f"pair {pair}  {floor.line()}", flush=True)
        ours = run_pollinate(data_dir, args.threads, args.backend)
        quality = "meets" if ours.meets_quality else "MISSES"
        print(f"pair {pair}  {ours.line()}  ({quality} the W1 quality bar)", flush=True)
        ratios.append(ours.rounds_s / floor.rounds_s)
        print(f"pair {pair}  ratio {ratios[-1]:.3f}", flush=True)
    return ratios


def report(ratios: list[float]) -> None:
    """The pairs' ratios, their median and the verdict on the goal."""
    median = statistics.median(ratios)
    verdict = "meets" if median <= GOAL_RATIO else "MISSES"
    print(f"pair ratios {' '.join(f'{r:.3f}' for r in ratios)}; goal <= {GOAL_RATIO}: {verdict}")
    print(f"ratio {median:.3f}")


if __name__ == "__main__":
    main()
