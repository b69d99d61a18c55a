"""Byzantine robustness: final MNIST accuracy per strategy x attack x malicious fraction.

MNIST (IDX files from a folder) is split over 100 clients by a Dirichlet(0.5) label
partition; 20 clients train each round (seeded sampling, the same clients for every
configuration), 30 rounds of the W1 MLP. The first ``round(fraction * 100)`` partitions are
malicious and attack their reply with one of:

- ``sign-flip``: ``w_g - 5 * (w_local - w_g)`` (the honest update, reversed and 5x longer)
- ``noise``: ``w_g + N(0, 1)`` per coordinate (seeded; the client does not train)
- ``scaling``: ``w_g + 10 * (w_local - w_g)`` (model replacement: the honest update x10)
- ``label-flip``: trains honestly on labels ``9 - y``

Malicious clients report their real example count. Strategies that need to know how many
attackers to expect get ``f = ceil(fraction * 20)``; those whose precondition fails for that
f (Bulyan: n >= 4f + 3, Krum: n >= 2f + 3, with n = 20 updates a round) are marked n/a.

Prints each result as it completes, then a markdown table of final test accuracy (and its
ratio to clean FedAvg) and the verdict on the goal: with 20% malicious clients, at least
one robust configuration keeps >= 90% of clean FedAvg's accuracy under every attack,
while plain FedAvg collapses (< 50% of clean) under sign-flip and scaling.

usage: python benchmarks/byzantine.py [--data-dir DIR] [--rounds N] [--strategies A,B]
                                      [--attacks A,B] [--fractions 0.1,0.2] [--quick]
                                      [--norm-bound X] [--write-docs]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pollinate import (
    ArrayRecord,
    ClientApp,
    Context,
    FedAvg,
    Message,
    MetricRecord,
    RecordDict,
    frameworks,
    run_simulation,
)
from pollinate.datasets import read_idx
from pollinate.datasets.partition import dirichlet
from pollinate.errors import ConfigError, PollinateError
from pollinate.strategy import Strategy
from pollinate.strategy._compose import chain

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mnist"
DOC = REPO / "docs" / "robustness.md"
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
MEAN, STD = 0.1307, 0.3081

NUM_CLIENTS = 100
PER_ROUND = 20
ALPHA = 0.5
PARTITION_SEED = 0
SAMPLING_SEED = 0
LR, BATCH, EPOCHS = 0.05, 32, 1
SIGN_FLIP_FACTOR = 5.0
SCALE_FACTOR = 10.0
NOISE_STD = 1.0
NORM_BOUND = 0.5
"""norm_bound's clip: between the median (0.36) and p90 (0.57) of clean honest update norms."""

GOAL_FRACTION, GOAL_KEEP, COLLAPSE = 0.2, 0.90, 0.50
ATTACKS = ("sign-flip", "noise", "scaling", "label-flip")
FRACTIONS = (0.1, 0.2, 0.33)
CLEAN = "clean"


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Client:
    """One partition: normalised images (float32, N x 784), labels and flipped labels."""

    x: torch.Tensor
    y: torch.Tensor
    y_flipped: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, slots=True)
class Data:
    """Every client's partition and the 10,000 test images, read and cut once."""

    clients: tuple[Client, ...]
    test_x: torch.Tensor
    test_y: torch.Tensor


def _normalised(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32))
    return x.div_(255.0).sub_(MEAN).div_(STD)


def load_data(data_dir: Path) -> Data:
    """Read MNIST, normalise it as W1 does and split it by Dirichlet(0.5) over 100 clients."""
    missing = [name for name in FILES if not (data_dir / name).is_file()]
    if missing:
        sys.exit(
            f"MNIST IDX file(s) {', '.join(missing)} not found in {data_dir}: pass --data-dir "
            "with the four MNIST .gz files (see examples/skewed-mnist/README.md)"
        )
    train_x = _normalised(read_idx(data_dir / FILES[0]))
    train_y = torch.from_numpy(read_idx(data_dir / FILES[1]).astype(np.int64))
    parts = dirichlet(train_y.numpy(), NUM_CLIENTS, alpha=ALPHA, seed=PARTITION_SEED)
    clients = []
    for idx in parts:
        index = torch.from_numpy(idx)
        y = train_y[index]
        clients.append(Client(train_x[index].contiguous(), y, 9 - y))
    test_x = _normalised(read_idx(data_dir / FILES[2]))
    test_y = torch.from_numpy(read_idx(data_dir / FILES[3]).astype(np.int64))
    return Data(tuple(clients), test_x, test_y)


# ----------------------------------------------------------------------------- model


class Net(nn.Module):
    """W1's MLP: Linear(784, 128) - ReLU - Linear(128, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 128)
        self.out = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.out(torch.relu(self.fc(x)))
        return logits


def initial_arrays() -> ArrayRecord:
    """Torch's default init after ``manual_seed(0)``, as in W1."""
    torch.manual_seed(0)
    state = Net().state_dict()
    return ArrayRecord({k: v.detach().numpy().copy() for k, v in state.items()})


@torch.no_grad()
def accuracy(arrays: ArrayRecord, data: Data) -> float:
    """Accuracy of a global model on the 10,000 test images."""
    net = Net()
    frameworks.torch.load_arrays(net, arrays)
    return float((net(data.test_x).argmax(1) == data.test_y).float().mean())


# ----------------------------------------------------------------------------- clients


@dataclass(slots=True)
class Trace:
    """What the clients saw in one run: honest update norms and malicious clients per round."""

    honest_norms: list[float] = field(default_factory=list)
    malicious_per_round: dict[int, int] = field(default_factory=dict)


def make_client_app(data: Data, attack: str, num_malicious: int, trace: Trace) -> ClientApp:
    """A ClientApp over the pre-loaded partitions; partitions below ``num_malicious`` attack."""
    app = ClientApp()
    net = Net()  # one model and optimizer for all clients: SGD without momentum keeps no state
    params = list(net.parameters())
    optimizer = torch.optim.SGD(params, lr=LR)
    loss_fn = nn.CrossEntropyLoss()

    def local_training(client: Client, labels: torch.Tensor, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        for _ in range(EPOCHS):
            perm = torch.randperm(len(client), generator=generator)
            for start in range(0, len(client), BATCH):
                idx = perm[start : start + BATCH]
                optimizer.zero_grad()
                loss_fn(net(client.x[idx]), labels[idx]).backward()
                optimizer.step()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        server_round = int(msg.content.config()["server-round"])  # type: ignore[arg-type]
        client = data.clients[partition]
        global_arrays = msg.content.arrays()
        names = list(global_arrays.keys())
        w_g = global_arrays.to_numpy()
        malicious = partition < num_malicious
        seed = server_round * 1_000 + partition
        if malicious:
            trace.malicious_per_round[server_round] = (
                trace.malicious_per_round.get(server_round, 0) + 1
            )
        if malicious and attack == "noise":
            rng = np.random.default_rng([server_round, partition])
            out = [g + rng.normal(0.0, NOISE_STD, g.shape).astype(np.float32) for g in w_g]
        else:
            frameworks.torch.load_arrays(net, global_arrays)
            flip = malicious and attack == "label-flip"
            local_training(client, client.y_flipped if flip else client.y, seed)
            local = [p.detach().numpy() for p in net.state_dict().values()]
            if malicious and attack == "sign-flip":
                out = [g - SIGN_FLIP_FACTOR * (w - g) for g, w in zip(w_g, local, strict=True)]
            elif malicious and attack == "scaling":
                out = [g + SCALE_FACTOR * (w - g) for g, w in zip(w_g, local, strict=True)]
            else:
                out = [w.copy() for w in local]
                if not malicious:
                    delta = sum(float(np.sum((w - g) ** 2)) for g, w in zip(w_g, out, strict=True))
                    trace.honest_norms.append(math.sqrt(delta))
        arrays = ArrayRecord(dict(zip(names, out, strict=True)))
        metrics = MetricRecord({"num-examples": len(client)})
        return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))

    return app


# ----------------------------------------------------------------------------- strategies


def expected_attackers(fraction: float) -> int:
    """The f a defence is configured for: ceil(fraction x 20), at least 1."""
    return max(1, math.ceil(fraction * PER_ROUND - 1e-9))


def trim_beta(f: int) -> float:
    """Trimmed-mean beta (the share cut from each end): f / n, at least 0.1."""
    return max(0.1, f / PER_ROUND)


Maker = Callable[[int, float, dict[str, Any]], Strategy]
"""(f, norm bound, FedAvg's keyword arguments) -> the strategy."""


@dataclass(frozen=True, slots=True)
class Config:
    """A named strategy configuration and its precondition on the updates a round."""

    name: str
    describe: Callable[[int, float], str]
    make: Maker
    needs: Callable[[int], int] = lambda f: 0
    needs_text: str = ""


def configs() -> dict[str, Config]:
    """Every configuration this benchmark knows, by name (robust ones need ``_robust``)."""
    r: Any = _robust()
    out = [
        Config("FedAvg", lambda f, b: "FedAvg()", lambda f, b, kw: FedAvg(**kw)),
        Config("FedMedian", lambda f, b: "FedMedian()", lambda f, b, kw: r.FedMedian(**kw)),
        Config(
            "FedTrimmedAvg",
            lambda f, b: f"FedTrimmedAvg(beta={trim_beta(f):g})",
            lambda f, b, kw: r.FedTrimmedAvg(beta=trim_beta(f), **kw),
        ),
        Config(
            "Krum",
            lambda f, b: f"Krum(num_malicious_nodes={f})",
            lambda f, b, kw: r.Krum(num_malicious_nodes=f, **kw),
            lambda f: 2 * f + 3,
            "n >= 2f+3",
        ),
        Config(
            "MultiKrum",
            lambda f, b: f"MultiKrum(num_malicious_nodes={f})",
            lambda f, b, kw: r.MultiKrum(num_malicious_nodes=f, **kw),
            lambda f: 2 * f + 3,
            "n >= 2f+3",
        ),
        Config(
            "Bulyan",
            lambda f, b: f"Bulyan(num_malicious_nodes={f})",
            lambda f, b, kw: r.Bulyan(num_malicious_nodes=f, **kw),
            lambda f: 4 * f + 3,
            "n >= 4f+3",
        ),
        Config(
            "NormBound",
            lambda f, b: f"FedAvg(aggregation=chain(norm_bound({b:g})))",
            lambda f, b, kw: FedAvg(aggregation=chain(r.norm_bound(b)), **kw),
        ),
        Config(
            "NormBound+Trimmed",
            lambda f, b: (
                f"FedAvg(aggregation=chain(norm_bound({b:g}), trimmed_mean({trim_beta(f):g})))"
            ),
            lambda f, b, kw: FedAvg(
                aggregation=chain(r.norm_bound(b), r.trimmed_mean(trim_beta(f))), **kw
            ),
        ),
    ]
    return {c.name: c for c in out}


DEFAULT_STRATEGIES = (
    "FedAvg",
    "FedMedian",
    "FedTrimmedAvg",
    "Krum",
    "MultiKrum",
    "Bulyan",
    "NormBound",
    "NormBound+Trimmed",
)


def _robust() -> Any:
    """``pollinate.strategy._robust``, or None while it is not there (written alongside)."""
    try:
        from pollinate.strategy import _robust
    except ImportError:
        return None
    return _robust


def build_strategy(config: Config, f: int, bound: float) -> Strategy | str:
    """The strategy for ``config`` with ``f`` expected attackers, or why it cannot run."""
    if config.needs(f) > PER_ROUND:
        return f"n/a: needs {config.needs_text}"
    options: dict[str, Any] = {
        "fraction_train": PER_ROUND / NUM_CLIENTS,
        "fraction_evaluate": 0.0,
        "min_train_nodes": PER_ROUND,
        "min_available_nodes": NUM_CLIENTS,
        "seed": SAMPLING_SEED,
    }
    try:
        return config.make(f, bound, options)
    except ConfigError as err:
        return f"n/a: {err}"


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True, slots=True)
class Outcome:
    """One run's result (accuracy None with ``note`` set when it could not run)."""

    strategy: str
    attack: str
    fraction: float
    f: int
    accuracy: float | None
    seconds: float
    note: str = ""
    trace: Trace | None = None
    tail: tuple[float, ...] = ()
    """Test accuracy after each of the last ``TAIL`` rounds (the last is ``accuracy``)."""

    @property
    def diverged(self) -> bool:
        return self.note.startswith("diverged")


TAIL = 5


def run_one(
    data: Data, config: Config, attack: str, fraction: float, rounds: int, bound: float, f: int
) -> Outcome:
    """One federated run; a run whose model stops being finite is scored at its last model."""
    num_malicious = round(fraction * NUM_CLIENTS) if attack != CLEAN else 0
    strategy = build_strategy(config, f, bound)
    if isinstance(strategy, str):
        return Outcome(config.name, attack, fraction, f, None, 0.0, strategy)
    trace = Trace()
    latest: list[ArrayRecord] = []
    tail: list[float] = []

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> dict[str, float] | None:
        """Test accuracy after each of the last TAIL rounds only (the rest costs nothing)."""
        latest[:] = [arrays]
        if server_round <= rounds - TAIL or server_round == 0:
            return None
        tail.append(accuracy(arrays, data))
        return {"accuracy": tail[-1]}

    began = time.perf_counter()
    note = ""
    try:
        run_simulation(
            client_app=make_client_app(data, attack, num_malicious, trace),
            num_nodes=NUM_CLIENTS,
            strategy=strategy,
            num_rounds=rounds,
            initial_arrays=initial_arrays(),
            evaluate_fn=evaluate_fn,
            backend="inline",
            verbose=False,  # the table below is the report
        )
        value = tail[-1]
    except PollinateError as err:  # e.g. the weighted mean is no longer finite
        first_line = str(err).splitlines()[0]
        note = f"diverged: {first_line[:160]}"
        value = accuracy(latest[0], data) if latest else 0.0
    seconds = time.perf_counter() - began
    return Outcome(config.name, attack, fraction, f, value, seconds, note, trace, tuple(tail))


# ----------------------------------------------------------------------------- report


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def cell(outcome: Outcome | None, reference: float | None, *, tail: bool = False) -> str:
    """``acc (ratio to clean FedAvg)`` for the table; n/a and divergence marked."""
    if outcome is None:
        return ""
    if outcome.accuracy is None:
        return outcome.note
    value = float(np.mean(outcome.tail)) if tail and outcome.tail else outcome.accuracy
    mark = "†" if outcome.diverged else ""
    ratio = f" ({value / reference:.2f})" if reference else ""
    return f"{pct(value)}{mark}{ratio}"


def table(
    results: dict[tuple[str, str, float], Outcome],
    strategies: Sequence[str],
    attacks: Sequence[str],
    fractions: Sequence[float],
    reference: float | None,
    *,
    tail: bool = False,
) -> str:
    """Rows strategy x fraction, columns clean + attacks: accuracy % (ratio to clean FedAvg)."""
    lines = [
        "| strategy | malicious | f | clean | " + " | ".join(attacks) + " |",
        "|---|---|---|---|" + "---|" * len(attacks),
    ]
    for name in strategies:
        clean = results.get((name, CLEAN, 0.0))
        if clean is not None:
            blanks = " |" * len(attacks)
            f = "" if name == "FedAvg" else str(clean.f)
            lines.append(f"| {name} | 0% | {f} | {cell(clean, reference, tail=tail)} |{blanks}")
        for fraction in fractions:
            row = [results.get((name, attack, fraction)) for attack in attacks]
            if all(o is None for o in row):
                continue
            f = "" if name == "FedAvg" else str(next(o.f for o in row if o is not None))
            cells = " | ".join(cell(o, reference, tail=tail) for o in row)
            lines.append(f"| {name} | {fraction:.0%} | {f} | | {cells} |")
    return "\n".join(lines)


def _keeps_all(
    results: dict[tuple[str, str, float], Outcome], name: str, fraction: float, reference: float
) -> bool | None:
    """Whether ``name`` keeps >= 90% of clean FedAvg under every attack at ``fraction``."""
    row = [results.get((name, attack, fraction)) for attack in ATTACKS]
    if any(o is None for o in row):
        return None
    return all(
        o is not None
        and o.accuracy is not None
        and not o.note
        and o.accuracy >= GOAL_KEEP * reference
        for o in row
    )


def verdict(
    results: dict[tuple[str, str, float], Outcome],
    strategies: Sequence[str],
    fractions: Sequence[float],
    reference: float | None,
) -> tuple[list[str], bool | None]:
    """Lines on the goal, and whether it is met (None if the grid does not cover it)."""
    lines: list[str] = []
    if reference is None:
        return ["no clean FedAvg run: no reference accuracy"], None
    lines.append(f"Clean FedAvg accuracy (the reference): {pct(reference)}%.")
    keepers: list[str] = []
    covered = True
    for name in strategies:
        if name == "FedAvg":
            continue
        row = [results.get((name, attack, GOAL_FRACTION)) for attack in ATTACKS]
        if any(o is None for o in row):
            covered = False
            continue
        if any(o.accuracy is None for o in row if o is not None):
            lines.append(f"{name} at 20%: {row[0].note if row[0] else 'n/a'}.")
            continue
        worst = min(row, key=lambda o: o.accuracy or 0.0)  # type: ignore[union-attr]
        assert worst is not None and worst.accuracy is not None
        keeps = _keeps_all(results, name, GOAL_FRACTION, reference)
        if keeps:
            keepers.append(name)
        where = [f"{x:.0%}" for x in fractions if _keeps_all(results, name, x, reference)]
        lines.append(
            f"{name} at 20%: worst {pct(worst.accuracy)}% under {worst.attack} "
            f"({worst.accuracy / reference:.3f} of clean FedAvg): "
            f"{'keeps' if keeps else 'does not keep'} >= {GOAL_KEEP:.0%} under every attack "
            f"(keeps it at: {', '.join(where) or 'no share'})."
        )
    collapses: dict[str, bool] = {}
    for attack in ("sign-flip", "scaling"):
        o = results.get(("FedAvg", attack, GOAL_FRACTION))
        if o is None or o.accuracy is None:
            covered = False
            continue
        collapses[attack] = o.accuracy < COLLAPSE * reference
        mean_tail = (
            f"; mean of the last {TAIL} rounds {pct(float(np.mean(o.tail)))}%, range "
            f"{pct(min(o.tail))}-{pct(max(o.tail))}%"
            if o.tail
            else ""
        )
        lines.append(
            f"FedAvg at 20% under {attack}: {pct(o.accuracy)}% ({o.accuracy / reference:.3f} of "
            f"clean{mean_tail}): {'collapses' if collapses[attack] else 'does NOT collapse'} "
            f"(collapse: < {COLLAPSE:.0%} of clean)."
        )
    collapsed = [
        f"{attack} at {fraction:.0%}"
        for fraction in fractions
        for attack in ATTACKS
        if (o := results.get(("FedAvg", attack, fraction))) is not None
        and o.accuracy is not None
        and o.accuracy < COLLAPSE * reference
    ]
    lines.append(f"FedAvg collapses under: {', '.join(collapsed) or 'nothing run'}.")
    if not covered:
        lines.append("The grid run does not cover the goal (20% with every attack, and FedAvg).")
        return lines, None
    met = bool(keepers) and len(collapses) == 2 and all(collapses.values())
    failed = [a for a, c in collapses.items() if not c]
    lines.append(
        f"Goal {'MET' if met else 'MISSED'}: robust configurations keeping >= {GOAL_KEEP:.0%} "
        f"of clean FedAvg at 20% under every attack: {', '.join(keepers) or 'none'}; FedAvg "
        + (
            "collapses under sign-flip and scaling."
            if not failed
            else f"does not collapse under {' and '.join(failed)}."
        )
    )
    return lines, met


def norm_summary(trace: Trace | None) -> str:
    """Percentiles of the honest update norms ``||w_local - w_g||`` of one run."""
    if trace is None or not trace.honest_norms:
        return "no honest update norms recorded"
    norms = np.array(trace.honest_norms)
    q = np.percentile(norms, [10, 50, 75, 90, 99])
    return (
        f"honest update L2 norms over {len(norms)} updates: p10 {q[0]:.3f}, median {q[1]:.3f}, "
        f"p75 {q[2]:.3f}, p90 {q[3]:.3f}, p99 {q[4]:.3f}, max {norms.max():.3f}"
    )


def malicious_summary(results: dict[tuple[str, str, float], Outcome], fraction: float) -> str:
    """How many of each round's 20 clients were malicious at ``fraction`` (sampling is seeded)."""
    for (_, attack, frac), outcome in results.items():
        if frac == fraction and attack != CLEAN and outcome.trace is not None:
            seen = outcome.trace.malicious_per_round
            rounds = max(seen, default=0)
            counts = [seen.get(r, 0) for r in range(1, rounds + 1)]
            if counts:
                return (
                    f"{fraction:.0%} ({round(fraction * NUM_CLIENTS)} malicious clients): "
                    f"{min(counts)} to {max(counts)} of the {PER_ROUND} a round "
                    f"(mean {np.mean(counts):.1f})"
                )
    return f"{fraction:.0%}: no attacked run"


# ----------------------------------------------------------------------------- main


def parse_list(text: str, known: Sequence[str], what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in items if s not in known]
    if unknown:
        sys.exit(f"unknown {what} {', '.join(unknown)}: choose from {', '.join(known)}")
    return items


@dataclass(slots=True)
class Grid:
    """What was asked for and what came out."""

    rounds: int
    strategies: list[str]
    attacks: list[str]
    fractions: list[float]
    bound: float
    threads: int
    command: str
    results: dict[tuple[str, str, float], Outcome] = field(default_factory=dict)
    reference: float | None = None
    load_start: float = 0.0
    load_end: float = 0.0
    total_s: float = 0.0
    sizes: str = ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="MNIST IDX folder")
    parser.add_argument("--rounds", type=int, default=30, help="federated rounds (default 30)")
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES))
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--fractions", default=",".join(str(f) for f in FRACTIONS))
    parser.add_argument("--norm-bound", type=float, default=NORM_BOUND, help="norm_bound's clip")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {TAIL} rounds, clean FedAvg and FedMedian, sign-flip at 20%%",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"write {DOC.relative_to(REPO)}")
    args = parser.parse_args()
    if args.rounds < TAIL:
        sys.exit(f"--rounds must be at least {TAIL}")
    if args.quick:
        args.rounds, args.strategies = TAIL, "FedMedian"
        args.attacks, args.fractions = "sign-flip", "0.2"
    known = tuple(configs())
    strategies = parse_list(args.strategies, known, "strategy")
    if _robust() is None and any(s != "FedAvg" for s in strategies):
        print("pollinate.strategy._robust is missing: running FedAvg only", flush=True)
        strategies = [s for s in strategies if s == "FedAvg"]
    attacks = parse_list(args.attacks, ATTACKS, "attack")
    try:
        fractions = [float(s) for s in args.fractions.split(",") if s.strip()]
    except ValueError:
        sys.exit(f"--fractions must be numbers separated by commas, got {args.fractions!r}")
    if any(not 0 < f < 0.5 for f in fractions):
        sys.exit("--fractions must lie strictly between 0 and 0.5")
    torch.set_num_threads(args.threads)
    grid = Grid(
        args.rounds,
        strategies,
        attacks,
        fractions,
        args.norm_bound,
        args.threads,
        " ".join(["python", "benchmarks/byzantine.py", *sys.argv[1:]]),
    )
    run_grid(grid, args.data_dir)
    text = table(grid.results, strategies, attacks, fractions, grid.reference)
    lines, met = verdict(grid.results, strategies, fractions, grid.reference)
    print()
    print(text)
    print()
    for line in lines:
        print(line)
    print(f"total {grid.total_s:.0f} s ({len(grid.results)} runs)")
    if args.write_docs:
        DOC.write_text(render_doc(grid, lines, met) + kept_notes())
        print(f"wrote {DOC}")


def run_grid(grid: Grid, data_dir: Path) -> None:
    """Every run of the grid, printed as it completes; the clean FedAvg reference first."""
    started = time.perf_counter()
    grid.load_start = os.getloadavg()[0]
    data = load_data(data_dir)
    sizes = np.array([len(c) for c in data.clients])
    grid.sizes = f"{sizes.min()}-{sizes.max()} (median {int(np.median(sizes))})"
    print(
        f"MNIST over {NUM_CLIENTS} clients (Dirichlet {ALPHA}, seed {PARTITION_SEED}): "
        f"{sizes.min()}-{sizes.max()} examples each (median {int(np.median(sizes))}), read in "
        f"{time.perf_counter() - started:.1f} s; {grid.rounds} rounds, {PER_ROUND} clients a "
        f"round, torch threads {grid.threads}; load {grid.load_start:.2f}",
        flush=True,
    )
    known = configs()

    def record(outcome: Outcome) -> None:
        grid.results[(outcome.strategy, outcome.attack, outcome.fraction)] = outcome
        if outcome.accuracy is None:
            shown = outcome.note
        else:
            ratio = outcome.accuracy / grid.reference if grid.reference else float("nan")
            shown = (
                f"{pct(outcome.accuracy)}% ({ratio:.2f} of clean FedAvg; last {TAIL} rounds "
                f"{pct(min(outcome.tail, default=None))}-{pct(max(outcome.tail, default=None))})"
            )
            if outcome.note:
                shown += f"  [{outcome.note}]"
        print(
            f"{outcome.strategy:<17} {outcome.fraction:>4.0%} {outcome.attack:<10} "
            f"f={outcome.f}  {outcome.seconds:5.1f} s  {shown}  (elapsed "
            f"{time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.2f})",
            flush=True,
        )

    def one(name: str, attack: str, fraction: float, f: int) -> Outcome:
        outcome = run_one(data, known[name], attack, fraction, grid.rounds, grid.bound, f)
        record(outcome)
        return outcome

    reference = run_one(data, known["FedAvg"], CLEAN, 0.0, grid.rounds, grid.bound, 0)
    grid.reference = reference.accuracy
    record(reference)
    print(norm_summary(reference.trace), flush=True)
    for name in grid.strategies:
        if name != "FedAvg":
            one(name, CLEAN, 0.0, expected_attackers(GOAL_FRACTION))
        for fraction in grid.fractions:
            for attack in grid.attacks:
                one(name, attack, fraction, expected_attackers(fraction))
    grid.total_s = time.perf_counter() - started
    grid.load_end = os.getloadavg()[0]


def _describe(config: Config, fs: Sequence[int], bound: float) -> str:
    """How a configuration is built for each f (once if f does not change it)."""
    built = {f: config.describe(f, bound) for f in fs}
    if len(set(built.values())) == 1:
        text = f"`{next(iter(built.values()))}`"
    else:
        text = "; ".join(f"f={f}: `{b}`" for f, b in built.items())
    need = f" (needs {config.needs_text} updates a round)" if config.needs_text else ""
    return f"  - **{config.name}**: {text}{need}"


def _bound_text(bound: float, trace: Trace | None) -> str:
    """Where the norm bound sits among the clean run's honest update norms."""
    if trace is None or not trace.honest_norms:
        return f"Norm bound: {bound:g}."
    norms = np.array(trace.honest_norms)
    clipped = float(np.mean(norms > bound))
    return (
        f"Norm bound: {bound:g}, on the L2 norm of `w_local - w_g` over the whole model. It "
        f"was chosen from the clean FedAvg run's honest update norms ({norm_summary(trace)}): "
        f"it clips {clipped:.0%} of those (the NormBound row at 0% shows what that costs a "
        "clean run), while it cuts a 5x sign-flipped or 10x scaled update back to the length of "
        "an ordinary one."
    )


NOTES = "\n## Notes\n"


def kept_notes() -> str:
    """The hand-written ``## Notes`` section of the doc now there, kept across rewrites."""
    if not DOC.is_file():
        return ""
    text = DOC.read_text()
    return text[text.index(NOTES) :] if NOTES in text else ""


def render_doc(grid: Grid, verdict_lines: Sequence[str], met: bool | None) -> str:
    """docs/robustness.md from the grid's results: method, settings, tables, verdict."""
    known = configs()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    timed = [o.seconds for o in grid.results.values() if o.accuracy is not None]
    per_run = (
        f"{np.median(timed):.1f} s median per run ({min(timed):.1f}-{max(timed):.1f} s)"
        if timed
        else "no runs"
    )
    reference = grid.results.get(("FedAvg", CLEAN, 0.0))
    args = (grid.results, grid.strategies, grid.attacks, grid.fractions, grid.reference)
    final, tail = table(*args), table(*args, tail=True)
    fs = sorted({expected_attackers(x) for x in (*grid.fractions, GOAL_FRACTION)})
    described = "\n".join(_describe(known[name], fs, grid.bound) for name in grid.strategies)
    goal = {True: "**met**", False: "**missed**", None: "**not covered by this grid**"}[met]
    verdict_md = "\n".join(f"- {line}" for line in verdict_lines)
    malicious = "\n".join(f"  - {malicious_summary(grid.results, x)}" for x in grid.fractions)
    shares = ", ".join(f"{x:.0%}" for x in grid.fractions)
    counts = ", ".join(str(round(x * NUM_CLIENTS)) for x in grid.fractions)
    return f"""# Byzantine robustness

Final test accuracy of the built-in strategies when some clients attack, and whether the
robust ones keep the model useful. Generated by `benchmarks/byzantine.py --write-docs` on
{now}; every number below comes from that run (a hand-written `## Notes` section at the end
is kept when the script rewrites this file).

## Summary

Goal: with 20% malicious clients, at least one built-in robust configuration keeps >= 90%
of clean FedAvg's accuracy under every attack, while plain FedAvg collapses (final accuracy
< 50% of clean FedAvg's) under sign-flip and scaling.

Verdict: {goal}.

{verdict_md}

## Final accuracy

Test accuracy (%) of the global model after round {grid.rounds} on the 10,000 MNIST test
images; in brackets, its ratio to clean FedAvg's {pct(grid.reference)}%. Rows: strategy and
share of malicious clients; the 0% row is the strategy without attackers (configured for
f = {expected_attackers(GOAL_FRACTION)}). f: the attackers per round a strategy is configured
for, ceil(share x {PER_ROUND}). † marks a run stopped early because its model was no longer
finite (scored at its last finite model); n/a, a configuration whose precondition fails for
that f.

{final}

Under attack the global model can swing from round to round, so one round's accuracy is a
noisy figure. The same table with the mean test accuracy over the last {TAIL} rounds:

{tail}

## Method

- Data: MNIST from its IDX files (60,000 train, 10,000 test images), pixels
  `(x/255 - 0.1307) / 0.3081` as in W1. The training set is split over {NUM_CLIENTS} clients
  by `pollinate.datasets.partition.dirichlet(labels, {NUM_CLIENTS}, alpha={ALPHA},
  seed={PARTITION_SEED})`: {grid.sizes} examples a client.
- Federation: `run_simulation` with the inline backend, {NUM_CLIENTS} nodes, {grid.rounds}
  rounds. {PER_ROUND} clients train each round (`fraction_train={PER_ROUND / NUM_CLIENTS}`,
  `min_train_nodes={PER_ROUND}`, `min_available_nodes={NUM_CLIENTS}`, sampling
  `seed={SAMPLING_SEED}`: every configuration sees the same clients in the same round). No
  federated evaluation; the centralized `evaluate_fn` scores the test set after each of the
  last {TAIL} rounds only.
- Model: W1's MLP, Linear(784, 128) - ReLU - Linear(128, 10), torch's default init after
  `torch.manual_seed(0)`.
- Honest local training: SGD, lr {LR}, no momentum, batch {BATCH}, {EPOCHS} local epoch a
  round (W2's settings: W1's 10 epochs would make each of the ~100 runs 10x longer),
  shuffled with a generator seeded `round * 1000 + partition`; one torch thread. Each
  reply is weighted by the client's example count; malicious clients report their real
  count too.
- Malicious clients: partitions 0 to `round(share * {NUM_CLIENTS}) - 1`, so {shares} are
  {counts} of the {NUM_CLIENTS} clients. With seeded sampling, the number of them among a
  round's {PER_ROUND} varies, and can exceed the f a defence is configured for:
{malicious}
- Attacks on a malicious client's reply, with `w_g` the global model it received and
  `w_local` its model after honest local training:
  - sign-flip: `w_g - {SIGN_FLIP_FACTOR:g} * (w_local - w_g)`, the honest update reversed
    and made {SIGN_FLIP_FACTOR:g}x longer (reversed alone, it would only cancel one honest
    client's update);
  - noise: `w_g + N(0, {NOISE_STD:g})` per coordinate (numpy
    `default_rng([round, partition])`); the client does not train;
  - scaling: `w_g + {SCALE_FACTOR:g} * (w_local - w_g)`, the honest update boosted
    {SCALE_FACTOR:g}x (model replacement);
  - label-flip: honest training on labels `9 - y`.
- Configurations, each built with the FedAvg options above (presets from
  `pollinate.strategy._robust`):
{described}
- Trimmed mean: beta = max(0.1, f / {PER_ROUND}), so f values are cut from each end of every
  coordinate. {_bound_text(grid.bound, reference.trace if reference else None)}
- Collapse: final accuracy below {COLLAPSE:.0%} of clean FedAvg's. Keeps: final accuracy at
  least {GOAL_KEEP:.0%} of clean FedAvg's.

## Run

- Command: `{grid.command}`
- {len(grid.results)} runs in {grid.total_s / 60:.1f} min: {per_run}, each {grid.rounds}
  rounds of {PER_ROUND} clients plus {TAIL} test evaluations.
- Machine: {os.cpu_count()} CPUs ({platform.machine()}), shared with other work; Python
  {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__},
  {grid.threads} torch thread(s). 1-minute load average {grid.load_start:.2f} at the start,
  {grid.load_end:.2f} at the end. Timings drift with the load; accuracies do not (every
  random choice is seeded).
"""


if __name__ == "__main__":
    main()
