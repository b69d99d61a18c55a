"""W3 (deploy-transfer): a link and its nodes over gRPC, against a plain TCP socket.

The link runs in this process; each node is a process of its own (``_w3_node.py``) on
127.0.0.1, whose ClientApp adds 1.0 to every float32 array and replies. FedAvg runs 3
rounds with every node (no evaluation). The floor (``_w3_socket.py``) moves the same bytes
over plain TCP sockets: the model out to each of the same number of client processes and
back, 3 rounds. Floor and pollinate alternate (floor first); the figure per size is the
median of the adjacent pairs' ratios, floor seconds over pollinate seconds per round:
pollinate's throughput as a fraction of the socket's.

Memory: the kernel's peak resident set size (VmHWM in /proc/PID/status). This process
resets its peak (``echo 5 > /proc/self/clear_refs``) before each size, and reports the
peak minus the resident size just before the model was built; each node reports its peak
minus its resident size after its imports. So the figures are what the transfer added,
counted in models; this process's increment includes the model the benchmark itself holds
(the ServerApp's initial model), and its floor runs happen in other processes.

With ``--slow-first SECONDS`` the first node in send order (the lowest node id) sleeps that
long each round before it replies, so every other reply is ready while the strategy cannot
fold any: the link's peak then shows how many replies it holds for a straggler (seconds per
round include the sleep).

usage: python benchmarks/deploy_transfer.py [--sizes 1,100,500,3000x1] [--pairs N]
                                            [--quick] [--tls] [--chunk-size BYTES]
                                            [--slow-first SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pollinate import ArrayRecord, FedAvg
from pollinate.deploy import Link, make_dev_certs, server_credentials

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = HERE / "_w3_node.py"
SOCKET_SCRIPT = HERE / "_w3_socket.py"
MB = 1_000_000
ROUNDS = 3
DEFAULT_SIZES = "1,100,500,3000x1"
QUICK_SIZES = "1,10"
GOAL_1MB_S = 0.050
GOAL_500MB_FRACTION = 0.50
GOAL_LINK_MODELS = 3.0
# The dry estimate, in models, until this run has measured its own at 100 MB or more (then
# 1.2x what it measured, see main): the link holds the benchmark's model, the strategy's
# copy, its current model, the float64 sum (2x) and the new mean, plus the replies it takes
# in at once (the link's max_open_replies, 2); each node its received message, its reply
# and the reply's frames.
DEFAULT_LINK_BASE_MODELS = 6.0
DEFAULT_NODE_MODELS = 3.5
HEADROOM = 0.85
"""Use at most this share of MemAvailable."""

FLOWER_QUOTED = (
    "Flower 1.41, quoted from ../shared/bench/WORKLOADS.md (its deployment on the 2-core "
    "development machine; not run here): 7-11 s per round at 1 MB, 16-22 s at 100 MB, "
    "65-74 s at 500 MB, about 36x the model in memory"
)


@dataclass(frozen=True, slots=True)
class Case:
    """One W3 size: the model's megabytes (10^6 bytes) and how many nodes take part."""

    megabytes: int
    nodes: int

    @property
    def model_bytes(self) -> int:
        return self.megabytes * MB

    @property
    def round_bytes(self) -> int:
        """Bytes a round moves: the model out to every node and back."""
        return 2 * self.nodes * self.model_bytes

    @property
    def label(self) -> str:
        return f"{self.megabytes} MB x {self.nodes}"


@dataclass
class Outcome:
    """What one case measured."""

    case: Case
    floor_s: list[float] = field(default_factory=list)
    """Floor seconds per round, one per pair (the mean of its rounds)."""
    ours_s: list[float] = field(default_factory=list)
    ours_rounds: list[list[float]] = field(default_factory=list)
    link_peak: int = 0
    """Bytes this process's peak RSS rose above its size before the model was built."""
    node_peaks: list[int] = field(default_factory=list)
    skipped: str = ""

    @property
    def ratios(self) -> list[float]:
        return [f / o for f, o in zip(self.floor_s, self.ours_s, strict=True)]

    @property
    def fraction(self) -> float:
        return statistics.median(self.ratios)

    @property
    def link_models(self) -> float:
        return self.link_peak / self.case.model_bytes

    @property
    def node_models(self) -> float:
        return max(self.node_peaks, default=0) / self.case.model_bytes

    @property
    def total_models(self) -> float:
        return (self.link_peak + sum(self.node_peaks)) / self.case.model_bytes


def parse_sizes(text: str) -> list[Case]:
    """``1,100,500,3000x1``: megabytes, optionally ``xK`` nodes (default 4, 1 from 3000 MB)."""
    cases = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        size, _, nodes = item.partition("x")
        megabytes = int(size)
        cases.append(Case(megabytes, int(nodes) if nodes else (1 if megabytes >= 3000 else 4)))
    return cases


def model(num_bytes: int, arrays: int) -> ArrayRecord:
    """``arrays`` float32 arrays of 0.5 totalling about ``num_bytes`` (every page touched)."""
    per_array = max(1, num_bytes // 4 // arrays)
    return ArrayRecord({f"layer{i}": np.full(per_array, 0.5, np.float32) for i in range(arrays)})


def status_kb(field_name: str, pid: str = "self") -> int:
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM), 0 where there is none."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux 4.0+); False if it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping)."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def open_replies(case: Case) -> int:
    """How many replies the link holds at once: it takes them in two at a time."""
    return min(case.nodes, 2)


def estimate_bytes(case: Case, link_base: float, node_models: float) -> int:
    """The most this case holds at once: the link's peak and all nodes' (floor runs apart).

    The link: ``link_base`` models plus the replies it holds at once. The floor needs the model, a
    reply buffer per node and a buffer per client, while the link process still holds its
    model: 2 + 2 x nodes models.
    """
    ours = link_base + open_replies(case) + case.nodes * node_models
    floor = 2 + 2 * case.nodes
    return int(max(ours, floor) * case.model_bytes)


def load() -> float:
    return os.getloadavg()[0]


def run_floor(case: Case, cert_dir: Path | None) -> list[float]:
    """One floor run (its own processes): seconds of each of its rounds."""
    command = [sys.executable, str(SOCKET_SCRIPT), "serve"]
    command += [str(case.model_bytes), str(case.nodes), str(ROUNDS)]
    if cert_dir is not None:
        command += ["--tls", str(cert_dir)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"the socket floor failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return [float(s) for s in json.loads(done.stdout.strip().splitlines()[-1])["round_s"]]


def start_nodes(
    case: Case, port: int, cert_dir: Path | None, chunk_size: int, log_dir: Path
) -> list[subprocess.Popen[str]]:
    command = [sys.executable, str(NODE_SCRIPT), f"127.0.0.1:{port}"]
    command += ["--chunk-size", str(chunk_size)]
    if cert_dir is not None:
        command += ["--ca", str(cert_dir / "ca.pem")]
    nodes = []
    for i in range(case.nodes):
        with open(log_dir / f"node{i}.log", "w") as log:
            nodes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True))
    return nodes


def node_peaks(nodes: list[subprocess.Popen[str]], log_dir: Path) -> list[int]:
    """Each node's peak RSS over its baseline, in bytes, once the link said goodbye."""
    peaks = []
    for i, node in enumerate(nodes):
        out, _ = node.communicate(timeout=120)
        lines = out.strip().splitlines()
        if node.returncode != 0 or not lines:
            log = (log_dir / f"node{i}.log").read_text()[-3000:]
            raise RuntimeError(f"node {i} failed ({node.returncode}):\n{log}")
        report = json.loads(lines[-1])
        peaks.append((report["peak_kb"] - report["baseline_kb"]) * 1024)
    return peaks


def stop_all(nodes: list[subprocess.Popen[str]]) -> None:
    for node in nodes:
        if node.poll() is None:
            node.kill()
            node.wait()


def run_case(case: Case, args: argparse.Namespace, cert_dir: Path | None) -> Outcome:
    """Start a link and the nodes, then alternate floor and pollinate runs of 3 rounds."""
    outcome = Outcome(case)
    credentials = None if cert_dir is None else server_credentials(cert_dir)
    link = Link("127.0.0.1:0", credentials=credentials, chunk_size=args.chunk_size)
    nodes: list[subprocess.Popen[str]] = []
    stopped = False
    with tempfile.TemporaryDirectory(prefix="w3-") as tmp:
        try:
            port = link.start()
            nodes = start_nodes(case, port, cert_dir, args.chunk_size, Path(tmp))
            link.grid(0, {}).wait_for_nodes(case.nodes, timeout_s=120)
            peak_known = reset_peak()
            baseline_kb = status_kb("VmRSS")
            initial = model(case.model_bytes, args.arrays)
            for pair in range(1, args.pairs + 1):
                before = load()
                floor = run_floor(case, cert_dir)
                outcome.floor_s.append(statistics.fmean(floor))
                print(
                    f"  pair {pair}  floor  {fmt_s(outcome.floor_s[-1])}/round "
                    f"({' '.join(fmt_s(s) for s in floor)}; load {before:.2f})",
                    flush=True,
                )
                before = load()
                rounds = run_pollinate(link, case, initial, args.slow_first)
                outcome.ours_rounds.append(rounds)
                outcome.ours_s.append(statistics.fmean(rounds))
                print(
                    f"  pair {pair}  ours   {fmt_s(outcome.ours_s[-1])}/round "
                    f"({' '.join(fmt_s(s) for s in rounds)}; load {before:.2f})  "
                    f"ratio {outcome.ratios[-1]:.3f}",
                    flush=True,
                )
            outcome.link_peak = (status_kb("VmHWM") - baseline_kb) * 1024
            if not peak_known:
                print(
                    "  (cannot reset VmHWM here: the link's peak is this process's lifetime peak)"
                )
            del initial
            link.stop(grace_s=5)
            stopped = True
            outcome.node_peaks = node_peaks(nodes, Path(tmp))
        finally:
            if not stopped:
                link.stop(grace_s=0.5)
            stop_all(nodes)
    return outcome


def run_pollinate(link: Link, case: Case, initial: ArrayRecord, slow_s: float) -> list[float]:
    """One W3 run: FedAvg, 3 rounds, every node; the wall time of each round.

    With ``slow_s`` the lowest node id, first in FedAvg's send order, sleeps that long first.
    """
    slow = {"slow-node": min(link.connected_nodes()), "slow-s": slow_s} if slow_s else {}
    grid = link.grid(secrets.randbits(63), slow)
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=case.nodes,
        min_available_nodes=case.nodes,
    )
    result = strategy.start(grid, initial, num_rounds=ROUNDS)
    rounds = [r for r in result.rounds if r.server_round > 0]
    if any(r.train is None or r.train.num_failed for r in rounds):
        raise RuntimeError(f"a round had failed replies: {[r.train for r in rounds]}")
    first = result.arrays["layer0"].numpy()
    if first[0] != 0.5 + ROUNDS or first[-1] != 0.5 + ROUNDS:
        raise RuntimeError(f"wrong result: {first[0]} (expected {0.5 + ROUNDS})")
    return [r.wall_time_s for r in rounds]


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(outcomes: list[Outcome]) -> str:
    """The summary: seconds per round, throughput, fraction of the socket, memory."""
    head = (
        "| model | nodes | pollinate s/round | socket s/round | pollinate MB/s | socket MB/s "
        "| fraction of socket (median of pairs) | link peak | node peak | all processes |"
    )
    lines = [head, "|" + "---|" * 10]
    for o in outcomes:
        c = o.case
        if o.skipped:
            lines.append(f"| {c.megabytes} MB | {c.nodes} | skipped: {o.skipped} |" + " |" * 7)
            continue
        ours, floor = statistics.median(o.ours_s), statistics.median(o.floor_s)
        lines.append(
            f"| {c.megabytes} MB | {c.nodes} | {fmt_s(ours)} | {fmt_s(floor)} "
            f"| {c.round_bytes / ours / MB:,.0f} | {c.round_bytes / floor / MB:,.0f} "
            f"| {o.fraction:.3f} ({', '.join(f'{r:.3f}' for r in o.ratios)}) "
            f"| {o.link_models:.1f}x | {o.node_models:.1f}x | {o.total_models:.1f}x |"
        )
    return "\n".join(lines)


def verdicts(outcomes: list[Outcome]) -> list[str]:
    """The issue's goals, for the sizes that ran."""
    out = []
    for o in outcomes:
        if o.skipped:
            continue
        c, ours = o.case, statistics.median(o.ours_s)
        if c.megabytes == 1:
            ok = "meets" if ours < GOAL_1MB_S else "MISSES"
            out.append(f"1 MB round {fmt_s(ours)} < {fmt_s(GOAL_1MB_S)}: {ok}")
        if c.megabytes == 500:
            ok = "meets" if o.fraction >= GOAL_500MB_FRACTION else "MISSES"
            out.append(f"500 MB at {o.fraction:.1%} of the socket >= 50%: {ok}")
        if c.megabytes >= 100:
            ok = "meets" if o.link_models < GOAL_LINK_MODELS else "MISSES"
            out.append(
                f"{c.label}: link peak {o.link_models:.2f}x the model < {GOAL_LINK_MODELS:g}x: {ok}"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help=f"default {DEFAULT_SIZES}")
    parser.add_argument("--pairs", type=int, default=None, help="floor/pollinate pairs (3)")
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}, 1 pair")
    parser.add_argument("--tls", action="store_true", help="TLS on both sides (dev certs)")
    parser.add_argument("--chunk-size", type=int, default=1 << 20, help="link/node chunk bytes")
    parser.add_argument("--arrays", type=int, default=4, help="arrays in the model (4)")
    parser.add_argument(
        "--slow-first", type=float, default=0.0, help="seconds the first node in send order sleeps"
    )
    args = parser.parse_args()
    cases = parse_sizes(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))
    args.pairs = args.pairs or (1 if args.quick else 3)
    transport = "TLS (dev certificates) on both sides" if args.tls else "plain text"
    print(
        f"W3 deploy-transfer: {ROUNDS} rounds per run, {args.pairs} floor/pollinate pairs per "
        f"size, {transport}, chunk {args.chunk_size:,} B, {args.arrays} float32 arrays, "
        f"first node {args.slow_first:g} s slow; "
        f"{os.cpu_count()} CPUs, load {load():.2f}",
        flush=True,
    )
    outcomes: list[Outcome] = []
    link_base, node_models = DEFAULT_LINK_BASE_MODELS, DEFAULT_NODE_MODELS
    with tempfile.TemporaryDirectory(prefix="w3-certs-") as certs:
        cert_dir = None
        if args.tls:
            cert_dir = Path(certs)
            make_dev_certs(cert_dir)
        for case in cases:
            need, free = estimate_bytes(case, link_base, node_models), available_bytes()
            print(
                f"{case.label}: needs about {need / 1e9:.1f} GB at its peak (link "
                f"{link_base:.1f}x + {open_replies(case)} replies, {case.nodes} x node "
                f"{node_models:.1f}x the model); {free / 1e9:.1f} GB available",
                flush=True,
            )
            if need > HEADROOM * free:
                reason = f"needs ~{need / 1e9:.0f} GB, {free / 1e9:.0f} GB available"
                print(f"  skipped: {reason}", flush=True)
                outcomes.append(Outcome(case, skipped=reason))
                continue
            outcome = run_case(case, args, cert_dir)
            outcomes.append(outcome)
            print(
                f"  peak memory over baseline: link {outcome.link_models:.2f}x, nodes "
                f"{' '.join(f'{p / case.model_bytes:.2f}x' for p in outcome.node_peaks)} "
                f"the model",
                flush=True,
            )
            if case.megabytes >= 100:  # small models measure the allocator, not the transfer
                link_base = 1.2 * max(0.0, outcome.link_models - open_replies(case))
                node_models = 1.2 * outcome.node_models
    print()
    print(table(outcomes))
    print()
    for line in verdicts(outcomes):
        print(line)
    print(FLOWER_QUOTED)


if __name__ == "__main__":
    main()
