"""Privacy-utility on W2: test accuracy at each epsilon, fixed clipping (a sweep) and adaptive.

W2 (``../shared/bench/WORKLOADS.md``: MNIST over ``--clients`` nodes by a Dirichlet(0.5)
label split, Linear(784,128)-ReLU-Linear(128,10), local SGD lr 0.05, batch 32, 1 epoch; the
split, model and client are ``vectorized_w2``'s) run for ``--rounds`` rounds through
``run_simulation`` on the vectorized backend, with ``FedAvg(fraction_train=--rate,
aggregation=chain(piece))`` (Poisson-sampled, ``--rate`` x clients nodes a round expected)
and one DP piece from ``pollinate.privacy``: ``dp_fixed_clip`` at each of ``--clips``, and
``dp_adaptive_clip`` at its defaults (initial clip 0.1, target quantile 0.5, clip learning
rate 0.2). A finite epsilon is asked for as ``target_epsilon`` with ``num_rounds`` (pollinate
calibrates the noise multiplier, printed), at delta ``--delta``; ``inf`` is clipping with a
noise multiplier of 1e-12 (the pieces refuse 0: its noise is 1e-12 of one clipped update).
Plain FedAvg without DP (a fixed-size sample of the same count) is the reference row.

Prints a line per run as it ends (the epsilon spent is read from the last round's train
metrics, ``privacy.epsilon``), then a markdown table of final test accuracy, the adaptive
clip's distance to the best fixed clip at each epsilon, and the command. ``--plot PATH``
also writes accuracy against epsilon, a line per method (needs matplotlib). Every draw is
seeded (``--seed``: torch's initial model, the DP sample and noise, FedAvg's sample), so the
table is reproducible on the same machine.

``--jobs N`` runs N simulations at once, each in its own process (spawned); the figures do
not change, only the wall time.

``--quick``: a smoke run of seconds (the first 1,200 MNIST training images over 60 nodes,
half a round, 3 rounds, two clips, epsilon 8 and inf): its figures mean nothing.

usage: python benchmarks/privacy_utility.py MNIST_DIR [--clients 1000] [--rate 0.1]
                                            [--rounds 200] [--epsilons 1,3,8,inf]
                                            [--clips 0.05,0.1,0.2,0.4,0.8] [--delta 1e-5]
                                            [--seed 0] [--threads 1] [--jobs 1]
                                            [--plot PATH] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch
from _mini_mnist import MINI_TRAIN, write_mini_mnist
from vectorized_w2 import Net, Split, declaration, load

from pollinate import ArrayRecord
from pollinate.frameworks import torch as torch_records
from pollinate.privacy import calibrate_noise_multiplier, dp_adaptive_clip, dp_fixed_clip
from pollinate.simulation import run_simulation
from pollinate.strategy import Aggregator, FedAvg, chain

NO_NOISE = 1e-12
"""The noise multiplier of the ``inf`` column: the pieces refuse 0, and this adds nothing."""

ADAPTIVE = "adaptive"
NO_DP = "no DP"


@dataclass(frozen=True)
class Outcome:
    """What one run gives the table: accuracy at the end and half-way, and its privacy."""

    accuracy: float
    halfway: float
    epsilon: float
    noise_multiplier: float
    clip: float
    seconds: float


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if not (args.data_dir / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"no MNIST IDX .gz files in {args.data_dir}: give the folder that holds them")
    if args.quick:
        print(
            f"--quick: {args.clients} nodes, the first {MINI_TRAIN:,} training images (not W2), "
            f"{args.rounds} rounds: the figures mean nothing",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="w2-mini-") as tmp:
            measure(args, str(write_mini_mnist(args.data_dir, Path(tmp))))
        return
    measure(args, str(args.data_dir))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path, help="folder of the four MNIST IDX .gz files")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=0.1, help="Poisson sampling rate a round")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--epsilons", type=floats, default=[1.0, 3.0, 8.0, math.inf])
    ap.add_argument("--clips", type=floats, default=[0.05, 0.1, 0.2, 0.4, 0.8])
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads a run")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once, each in its process")
    ap.add_argument("--plot", type=Path, help="write accuracy against epsilon here (PNG)")
    ap.add_argument("--quick", action="store_true", help="smoke run of seconds on mini MNIST")
    args = ap.parse_args()
    if args.quick:
        args.clients, args.rate, args.rounds = 60, 0.5, 3
        args.epsilons, args.clips = [8.0, math.inf], [0.1, 0.4]
    return args


def floats(text: str) -> list[float]:
    """A comma-separated list of numbers (``inf`` allowed), for an argument."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None


def measure(args: argparse.Namespace, data_dir: str) -> None:
    """Every run, a line each as it ends, then the table (and the plot if asked)."""
    methods = [f"fixed {clip:g}" for clip in args.clips] + [ADAPTIVE]
    print(
        f"W2 privacy-utility: {args.clients:,} nodes, sampling rate {args.rate:g} "
        f"({args.rate * args.clients:g} a round expected), {args.rounds} rounds, "
        f"delta {args.delta:g}, seed {args.seed}, {args.jobs} job(s), pollinate {commit()}",
        flush=True,
    )
    for epsilon in args.epsilons:
        if math.isfinite(epsilon):
            z = calibrate_noise_multiplier(epsilon, args.delta, args.rate, args.rounds)
            print(f"epsilon {epsilon:g}: calibrated noise multiplier {z:.4f}", flush=True)
    # the costliest first (the accountant's work grows as the noise shrinks), so jobs end together
    order = sorted(args.epsilons, key=lambda e: (not math.isfinite(e), -e))
    runs = [(method, epsilon) for epsilon in order for method in methods] + [(NO_DP, math.inf)]
    outcomes: dict[tuple[str, float], Outcome] = {}
    if args.jobs == 1:
        for method, epsilon in runs:
            outcomes[method, epsilon] = show(method, epsilon, run(method, epsilon, data_dir, args))
    else:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=spawn) as pool:
            futures = {pool.submit(run, *key, data_dir, args): key for key in runs}
            for future in as_completed(futures):
                outcomes[futures[future]] = show(*futures[future], future.result())
    reference = outcomes.pop((NO_DP, math.inf))
    print()
    for line in table(methods, args.epsilons, outcomes, reference):
        print(line)
    if args.plot:
        title = f"W2 DP-FedAvg: {args.clients:,} nodes, {args.rounds} rounds"
        plot(args.plot, title, methods, args.epsilons, outcomes, reference)
        print(f"plot written to {args.plot}")
    print(f"command: python {' '.join(shlex.quote(a) for a in sys.argv)}")


@functools.cache
def dataset(data_dir: str, clients: int) -> Split:
    """W2's data and split, loaded once a process."""
    return load(data_dir, clients)


def piece(method: str, epsilon: float, args: argparse.Namespace) -> Aggregator:
    """The DP piece of one run: calibrated for a finite ``epsilon``, noiseless for inf."""
    target = epsilon if math.isfinite(epsilon) else None
    z = None if target else NO_NOISE
    rounds = args.rounds if target else None
    if method == ADAPTIVE:
        return dp_adaptive_clip(
            z, target_epsilon=target, num_rounds=rounds, delta=args.delta, seed=args.seed
        )
    return dp_fixed_clip(
        clip_of(method),
        z,
        target_epsilon=target,
        num_rounds=rounds,
        delta=args.delta,
        seed=args.seed,
    )


def clip_of(method: str) -> float:
    """The clip norm of a ``"fixed C"`` method."""
    return float(method.split()[1])


def run(method: str, epsilon: float, data_dir: str, args: argparse.Namespace) -> Outcome:
    """One ``run_simulation`` of W2 with ``method``'s aggregation at ``epsilon``."""
    torch.set_num_threads(args.threads)
    data = dataset(data_dir, args.clients)
    halfway = max(1, args.rounds // 2)
    accuracies: dict[int, float] = {}

    def evaluate(server_round: int, arrays: ArrayRecord) -> None:
        if server_round == halfway:
            accuracies[server_round] = accuracy(arrays, data)

    aggregation = None if method == NO_DP else chain(piece(method, epsilon, args))
    strategy = FedAvg(
        fraction_train=args.rate,
        fraction_evaluate=0.0,
        min_train_nodes=1,
        seed=args.seed,
        aggregation=aggregation,
        evaluate_fn=evaluate,
    )
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    result = run_simulation(
        client_app=declaration(data).client_app(),
        num_nodes=args.clients,
        strategy=strategy,
        num_rounds=args.rounds,
        initial_arrays=torch_records.to_arrays(Net()),
        backend="vectorized",
        run_id=1,
        verbose=False,
    )
    seconds = time.perf_counter() - started
    last = result.metrics("train").get(args.rounds, {})
    return Outcome(
        accuracy=accuracy(result.arrays, data),
        halfway=accuracies.get(halfway, math.nan),
        epsilon=float(last.get("privacy.epsilon", math.inf)),
        noise_multiplier=float(last.get("privacy.noise-multiplier", 0.0)),
        clip=float(last.get("privacy.clip-norm", math.nan)),
        seconds=seconds,
    )


def accuracy(arrays: ArrayRecord, data: Split) -> float:
    """The model's accuracy on the 10,000 MNIST test images."""
    net = Net()
    net.load_state_dict(torch_records.to_state_dict(arrays))
    with torch.no_grad():
        return float((net(data[2]).argmax(1) == data[3]).float().mean())


def show(method: str, epsilon: float, out: Outcome) -> Outcome:
    """The run's progress line; ``out`` unchanged."""
    print(
        f"{method:<10} target epsilon {epsilon:<4g} spent {out.epsilon:<8.4g} "
        f"z {out.noise_multiplier:<7.4g} clip {out.clip:<7.4g} "
        f"accuracy half-way {out.halfway:.4f}  end {out.accuracy:.4f}  {out.seconds:6.1f} s",
        flush=True,
    )
    return out


def table(
    methods: Sequence[str],
    epsilons: Sequence[float],
    outcomes: dict[tuple[str, float], Outcome],
    reference: Outcome,
) -> list[str]:
    """The markdown table: accuracy (%) per method and epsilon, the best fixed clip, the gap."""
    fixed = [m for m in methods if m != ADAPTIVE]
    heads = " | ".join(f"epsilon {e:g}".replace("inf", "inf (no noise)") for e in epsilons)
    lines = [f"| clipping | {heads} |", "|---" * (len(epsilons) + 1) + "|"]
    for method in methods:
        cells = []
        for epsilon in epsilons:
            out = outcomes[method, epsilon]
            note = f" (clip {out.clip:.3g})" if method == ADAPTIVE else ""
            cells.append(f"{100 * out.accuracy:.2f}{note}")
        label = (
            f"fixed, clip {clip_of(method):g}" if method != ADAPTIVE else "adaptive, quantile 0.5"
        )
        lines.append(f"| {label} | {' | '.join(cells)} |")
    best, gap = [], []
    for epsilon in epsilons:
        top = max(fixed, key=lambda m: outcomes[m, epsilon].accuracy)
        top_acc = outcomes[top, epsilon].accuracy
        best.append(f"{100 * top_acc:.2f} (clip {clip_of(top):g})")
        points = 100 * (outcomes[ADAPTIVE, epsilon].accuracy - top_acc)
        gap.append(f"{points:+.2f} ({'within' if points >= -1 else 'NOT within'} 1 point)")
    lines.append(f"| best fixed clip | {' | '.join(best)} |")
    lines.append(f"| adaptive - best fixed | {' | '.join(gap)} |")
    spent = [f"{outcomes[ADAPTIVE, e].epsilon:.3g}" for e in epsilons]
    zs = [f"{outcomes[ADAPTIVE, e].noise_multiplier:.4g}" for e in epsilons]
    lines.append(f"| epsilon spent (privacy.epsilon) | {' | '.join(spent)} |")
    lines.append(f"| noise multiplier z | {' | '.join(zs)} |")
    lines.append(f"\nplain FedAvg without DP: {100 * reference.accuracy:.2f}")
    return lines


def plot(
    path: Path,
    title: str,
    methods: Sequence[str],
    epsilons: Sequence[float],
    outcomes: dict[tuple[str, float], Outcome],
    reference: Outcome,
) -> None:
    """Accuracy against epsilon, a line per method; inf drawn at the right edge, labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [e for e in epsilons if math.isfinite(e)]
    edge = 2 * max(finite) if finite else 1.0
    xs = [e if math.isfinite(e) else edge for e in epsilons]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for method in methods:
        ys = [100 * outcomes[method, e].accuracy for e in epsilons]
        style = {"linewidth": 2.5, "color": "black"} if method == ADAPTIVE else {"alpha": 0.8}
        label = (
            "adaptive (quantile 0.5)" if method == ADAPTIVE else f"fixed clip {clip_of(method):g}"
        )
        ax.plot(xs, ys, marker="o", label=label, **style)
    ax.axhline(100 * reference.accuracy, linestyle="--", color="grey", label="FedAvg, no DP")
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{e:g}" if math.isfinite(e) else "inf" for e in epsilons])
    ax.set_xlabel("epsilon (delta 1e-5)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def commit() -> str:
    """The pollinate checkout's commit (with ``+changes`` if its tree differs), or unknown."""
    root = Path(__file__).resolve().parents[1]

    def git(*words: str) -> str:
        done = subprocess.run(["git", *words], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


if __name__ == "__main__":
    main()
