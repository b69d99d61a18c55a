"""Where W1's rounds time goes: local training, centralized evaluation, and the framework.

The floor ratio (``skewed_mnist.py``) compares two processes and so carries the machine's
drift; this splits one run's rounds time instead, which no drift can blur. It runs
``examples/skewed-mnist`` in this process (inline backend) with timers around the app's own
``task.train`` and ``task.scores``: whatever is left of the rounds time is pollinate's.
``--quick`` is a smoke run of seconds: 1 epoch, 1 thread, the first 1,200 training images.

usage: python benchmarks/skewed_mnist_breakdown.py DATA_DIR [--epochs E] [--threads T] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from _mini_mnist import MINI_TRAIN, write_mini_mnist

from pollinate import ServerApp, run_simulation
from pollinate.loader import load_object

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

APP_DIR = Path(__file__).resolve().parents[1] / "examples" / "skewed-mnist"
F = TypeVar("F", bound=Callable[..., Any])


class Stopwatch:
    """The duration of every call to the functions it wraps, by label."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = {}

    def wrap(self, label: str, fn: F) -> F:
        """``fn``, timed under ``label``."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.calls.setdefault(label, []).append(time.perf_counter() - began)

        return timed  # type: ignore[return-value]


def app_config(data_dir: Path, epochs: int, threads: int) -> dict[str, Any]:
    """The app's default run config with the data, epochs and threads set."""
    with (APP_DIR / "pyproject.toml").open("rb") as f:
        config = dict(tomllib.load(f)["tool"]["pollinate"]["app"]["config"])
    return {**config, "data-dir": str(data_dir), "local-epochs": epochs, "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder with the four MNIST IDX .gz files")
    parser.add_argument("--epochs", type=int, default=10, help="local epochs (W1: 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, mini MNIST")
    args = parser.parse_args()
    if not args.quick:
        breakdown(args.data_dir, args.epochs, args.threads)
        return
    print(f"--quick: 1 epoch, 1 thread, the first {MINI_TRAIN:,} training images: not W1")
    with tempfile.TemporaryDirectory(prefix="w1-mini-") as tmp:
        breakdown(write_mini_mnist(args.data_dir, Path(tmp)), epochs=1, threads=1)


def breakdown(data_dir: Path, epochs: int, threads: int) -> None:
    """Run the example once with timers around its training and evaluation; print the split."""
    server_app = load_object("skewed_mnist.server_app:app", ServerApp, APP_DIR)
    task = sys.modules["skewed_mnist.task"]
    watch = Stopwatch()
    task.train = watch.wrap("training", task.train)
    task.scores = watch.wrap("evaluation", task.scores)
    result = run_simulation(
        server_app,
        "skewed_mnist.client_app:app",
        num_nodes=3,
        app_dir=APP_DIR,
        run_config=app_config(data_dir, epochs, threads),
        verbose=False,  # the breakdown below is the report
    )
    rounds = result.rounds_time_s
    num_rounds = len(result.rounds) - 1
    training = sum(watch.calls["training"])
    evaluation = sum(watch.calls["evaluation"][1:])  # the first is round 0's, before the rounds
    framework = rounds - training - evaluation
    print(f"rounds time          {rounds:8.3f} s  ({num_rounds} rounds, {epochs} epochs)")
    print(f"  local training     {training:8.3f} s")
    print(f"  central evaluation {evaluation:8.3f} s")
    print(f"  pollinate          {framework:8.3f} s  ({framework / rounds:.2%} of the rounds time)")
    print(f"accuracy {result.final_metrics()['server.accuracy']:.4f}")


if __name__ == "__main__":
    main()
