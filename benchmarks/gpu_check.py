"""W2 (cross-device-mnist) on a GPU: per-client on the inline and process backends, vectorized.

Runs, one after another, and prints each one's rounds time and test accuracy:

- ``floor (CPU)``: the plain-loop floor on the CPU, for scale;
- ``inline``: ``pollinate run examples/cross-device-mnist`` with ``num-gpus = 1`` (every node in
  one process on ``cuda:0``);
- ``process``: the same with ``num-gpus = SHARE`` (default 0.25: four workers share each GPU,
  each seeing only its own through ``CUDA_VISIBLE_DEVICES``);
- ``vectorized``: W2's declaration (``benchmarks/vectorized_w2.py``) on the vectorized backend
  with ``num-gpus = 1``, W2's sampling, in this process.

The per-client runs use the example as it is (its nodes put their model and batches on
``context.node_config["device"]``). Without a GPU it stops with one message, unless
``--quick``: a smoke run of seconds (50 clients, 10 a round, 2 rounds, the first 1,200
training images), on the CPU when no GPU is found, whose figures mean nothing.

usage: python benchmarks/gpu_check.py DATA_DIR [--clients N] [--share S] [--floor PATH]
                                       [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _mini_mnist import MINI_TRAIN, write_mini_mnist
from cross_device import DEFAULT_FLOOR, Workload, pollinate_command, run_floor, run_json
from vectorized_w2 import Net, declaration, load

from pollinate import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from pollinate.frameworks import torch as torch_records
from pollinate.simulation import ClientAppSource, Task, make_backend
from pollinate.simulation._gpus import GpuInventory, find_gpus, worker_gpus

VECTORIZED_BUDGET_MB = 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder with the four MNIST IDX .gz files")
    parser.add_argument("--clients", type=int, default=1000, help="nodes (default 1000)")
    parser.add_argument("--share", type=float, default=0.25, help="num-gpus of a process worker")
    parser.add_argument("--floor", type=Path, default=DEFAULT_FLOOR, help="floor script path")
    parser.add_argument("--quick", action="store_true", help="smoke run on mini MNIST")
    args = parser.parse_args()
    if not args.floor.is_file():
        sys.exit(f"floor script not found at {args.floor}: pass --floor PATH")
    if not (args.data_dir / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(
            f"no MNIST IDX .gz files in {args.data_dir}: see examples/cross-device-mnist/README.md"
        )
    gpus = find_gpus()
    if not gpus.ids and not args.quick:
        sys.exit(
            f"gpu_check.py measures W2 on a GPU, and this machine has {gpus.found()}: run it "
            "on a machine with a GPU (or pass --quick for a smoke run on the CPU)"
        )
    if not args.quick:
        check(args, gpus, Workload(args.data_dir, args.clients, 100, 10, 1))
        return
    where = "on the GPU" if gpus.ids else "ON THE CPU (no GPU found): the figures mean nothing"
    print(
        f"--quick: 50 clients, 10 a round, 2 rounds, the first {MINI_TRAIN:,} training "
        f"images (not W2), {where}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="w2-mini-") as tmp:
        check(args, gpus, Workload(write_mini_mnist(args.data_dir, Path(tmp)), 50, 10, 2, 1))


def check(args: argparse.Namespace, gpus: GpuInventory, work: Workload) -> None:
    """Every run, one line each: what ran where, its rounds time and its accuracy."""
    share = args.share if gpus.ids else 0.0
    workers = process_workers(share, gpus)
    print(
        f"W2: {work.clients:,} clients, {work.per_round} a round, {work.rounds} rounds, "
        f"{gpus.found()}",
        flush=True,
    )
    floor = run_floor(args.floor, work)
    show("floor (CPU)", floor.rounds_s, floor.accuracy)
    inline = 1.0 if gpus.ids else 0.0
    show(f"inline, num-gpus {inline:g}", *per_client(work, "inline", inline, 1))
    label = f"process, num-gpus {share:g}, {workers} workers"
    show(label, *per_client(work, "process", share, workers))
    show(f"vectorized, num-gpus {inline:g}", *vectorized(work, inline))


def show(label: str, rounds_s: float, accuracy: float) -> None:
    print(f"{label:<38} rounds {rounds_s:7.2f} s  accuracy {accuracy:.4f}", flush=True)


def process_workers(share: float, gpus: GpuInventory) -> int:
    """The workers the process run gets: what the GPUs hold at ``share``, at most one a core."""
    cores = os.cpu_count() or 1
    return min(cores, len(worker_gpus(share, gpus))) if share else min(cores, 2)


def per_client(work: Workload, backend: str, num_gpus: float, workers: int) -> tuple[float, float]:
    """``pollinate run examples/cross-device-mnist`` on ``backend``: rounds time, accuracy."""
    with tempfile.TemporaryDirectory(prefix="w2-gpu-") as tmp:
        command = pollinate_command(work, backend, workers, Path(tmp) / "run")
        command += ["--federation-config", f"client-resources.num-gpus={num_gpus}"]
        out, _, _ = run_json(command, work.threads)
    final = out["final"]
    assert isinstance(final, dict)
    return float(out["rounds_time_s"]), float(final["server.accuracy"])  # type: ignore[arg-type]


def vectorized(work: Workload, num_gpus: float) -> tuple[float, float]:
    """W2's rounds on the vectorized backend (W2's sampling, FedAvg by example count)."""
    torch.set_num_threads(work.threads)
    data = load(str(work.data_dir), work.clients)
    backend = make_backend("vectorized", memory_budget_mb=VECTORIZED_BUDGET_MB, num_gpus=num_gpus)
    backend.start(ClientAppSource(app=declaration(data).client_app()))
    torch.manual_seed(0)
    model, rng = Net(), np.random.default_rng(0)
    started = time.perf_counter()
    try:
        for server_round in range(1, work.rounds + 1):
            picked = rng.choice(work.clients, work.per_round, replace=False)
            content = RecordDict(
                {
                    "arrays": torch_records.to_arrays(model),
                    "config": ConfigRecord({"server-round": server_round}),
                }
            )
            tasks = [
                Task(
                    Message.create(content, int(p) + 1, "train"),
                    Context(0, int(p) + 1, {"partition-id": int(p)}),
                )
                for p in picked
            ]
            replies = [result.reply for result in backend.run(tasks, None)]
            torch_records.load_arrays(model, fedavg(replies))
    finally:
        backend.close()
    rounds_s = time.perf_counter() - started
    with torch.no_grad():
        accuracy = float((model(data[2]).argmax(1) == data[3]).float().mean())
    return rounds_s, accuracy


def fedavg(replies: list[Message]) -> ArrayRecord:
    """The replies' arrays averaged, each weighted by its ``num-examples``."""
    failed = [reply.error for reply in replies if reply.has_error]
    if failed:
        sys.exit(f"vectorized: {len(failed)} nodes failed, the first with {failed[0]}")
    weights = [float(reply.content.metrics()["num-examples"]) for reply in replies]  # type: ignore[arg-type]
    total = sum(weights)
    names = list(replies[0].content.arrays())
    mean = {
        name: sum(
            r.content.arrays()[name].numpy() * (w / total)
            for r, w in zip(replies, weights, strict=True)
        )
        for name in names
    }
    return torch_records.to_arrays({k: torch.from_numpy(np.asarray(v)) for k, v in mean.items()})


if __name__ == "__main__":
    main()
