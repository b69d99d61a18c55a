"""Every benchmark's ``--quick`` smoke run exits 0 and prints its figures, so none can rot.

Each runs in its own process, as a user would run it; the figures themselves are not
checked (this machine's load decides them), only that each line a reader needs is there.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .._shared import in_ci, require_mnist, require_w1_floor, require_w2_floor

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
NUMBER = r"[\d.,]+"

pytestmark = pytest.mark.slow


def run_quick(script: str, *args: str) -> list[str]:
    """``python benchmarks/SCRIPT --quick ARGS``: its stdout lines, once it exited 0."""
    command = [sys.executable, str(BENCHMARKS / script), "--quick", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, f"{script} --quick failed:\n{done.stderr[-3000:]}"
    return done.stdout.splitlines()


def has_line(lines: list[str], pattern: str) -> bool:
    return any(re.fullmatch(pattern, line) for line in lines)


def assert_flower_only_quoted(lines: list[str]) -> None:
    """Flower's figures come on one line of their own, said to be quoted, not measured here."""
    (flower,) = [line for line in lines if "Flower" in line]
    assert flower.startswith("Flower 1.41, quoted from ") and "not run here" in flower


def test_round_overhead() -> None:
    lines = run_quick("round_overhead.py")
    ms = rf"{NUMBER} ms/round \(min {NUMBER}, n=2\)"
    goal = rf"goal 10\.50 ms: (meets|MISSES) \({NUMBER}x\)"
    assert has_line(lines, rf"inline +10 nodes +tiny model +{ms} +{goal}")
    floor = rf"numpy floor {NUMBER} ms \({NUMBER}x\)"
    assert has_line(lines, rf"inline +10 nodes +1 MB model +{ms} +{goal} +{floor}")
    assert has_line(lines, rf"process +10 nodes +tiny model +{ms}")
    scale = rf"start-up {NUMBER} ms  memory held {NUMBER} MB \(peak {NUMBER} MB\)"
    assert has_line(lines, rf"inline +100000 nodes  100 sampled  no-op +{ms}  {scale}")
    assert_flower_only_quoted(lines)


def test_partition() -> None:
    lines = run_quick("partition.py")
    assert lines[0] == "100,000 labels, 10 classes, best of 1"
    assert has_line(lines, rf"dirichlet P=1000 alpha=1\.0 min=10 +{NUMBER} s +1000 parts, .*")
    assert len(lines) == 15 and lines[-1].startswith("target: not measured by --quick")


def test_deploy_transfer() -> None:
    lines = run_quick("deploy_transfer.py")
    row = rf"\| 1 MB \| 4 \| {NUMBER} ms \| {NUMBER} ms \|( {NUMBER} \|){{2}} {NUMBER} \(.*"
    assert has_line(lines, row)
    assert has_line(lines, rf"1 MB round {NUMBER} ms < 50\.0 ms: (meets|MISSES)")
    assert_flower_only_quoted(lines)


def test_skewed_mnist() -> None:
    floor, data = require_w1_floor(), require_mnist()
    lines = run_quick("skewed_mnist.py", str(data), "--floor", str(floor))
    for side in ("floor", "pollinate"):
        assert has_line(lines, rf"pair 1  {side} +rounds +{NUMBER} s .*")
    assert has_line(lines, rf"pair 1  ratio {NUMBER}")
    assert re.fullmatch(rf"ratio {NUMBER}", lines[-1])


@pytest.mark.parametrize("backend", ["inline", "process", "ray"])
def test_cross_device(backend: str) -> None:
    floor, data = require_w2_floor(), require_mnist()
    if backend == "ray" and importlib.util.find_spec("ray") is None and not in_ci():
        pytest.skip("Ray is not installed (pip install 'pollinate[ray]')")
    lines = run_quick("cross_device.py", str(data), "--floor", str(floor), "--backend", backend)
    for side in ("floor", "pollinate"):
        run = rf"pair 1  {side} +rounds +{NUMBER} s  command +{NUMBER} s  peak +{NUMBER} MB  "
        assert has_line(lines, rf"{run}accuracy {NUMBER} .*")
    assert has_line(lines, rf"pollinate first round {NUMBER} s")
    assert has_line(lines, rf"pair 1  ratio {NUMBER}  command [+-]{NUMBER} s")
    assert re.fullmatch(rf"ratio {NUMBER}", lines[-1])


def test_skewed_mnist_breakdown() -> None:
    lines = run_quick("skewed_mnist_breakdown.py", str(require_mnist()))
    assert has_line(lines, rf"  pollinate +{NUMBER} s  \({NUMBER}% of the rounds time\)")
    assert re.fullmatch(rf"accuracy {NUMBER}", lines[-1])


def test_many_nodes() -> None:
    lines = run_quick("many_nodes.py", str(require_mnist()))
    assert lines[0] == "W2 on 100,000 nodes, 10 a round, 2 rounds, inline"
    assert has_line(lines, rf"start-up {NUMBER} ms \(run_simulation call to round 1\)")
    assert has_line(lines, rf"rounds {NUMBER} s  \(\d+ node replies with data\)")
    assert re.fullmatch(rf"accuracy {NUMBER}", lines[-1])


def test_byzantine() -> None:
    lines = run_quick("byzantine.py", "--data-dir", str(require_mnist()))
    assert "| strategy | malicious | f | clean | sign-flip |" in lines
    assert has_line(lines, rf"\| FedMedian \| 20% \| 4 \| \| {NUMBER} \({NUMBER}\) \|")
    assert has_line(lines, r"total \d+ s \(3 runs\)")


def test_gpu_check() -> None:
    floor, data = require_w2_floor(), require_mnist()
    lines = run_quick("gpu_check.py", str(data), "--floor", str(floor))
    assert lines[0].startswith("--quick: 50 clients") and (
        lines[0].endswith("ON THE CPU (no GPU found): the figures mean nothing")
        or lines[0].endswith("on the GPU")
    )
    figures = rf"rounds +{NUMBER} s  accuracy {NUMBER}"
    for run in (
        "floor \\(CPU\\)",
        "inline, num-gpus [01]",
        "process, num-gpus [.\\d]+, \\d+ workers",
    ):
        assert has_line(lines, rf"{run} +{figures}")
    assert re.fullmatch(rf"vectorized, num-gpus [01] +{figures}", lines[-1])


def test_secagg() -> None:
    lines = run_quick("secagg.py")
    assert lines[0].startswith("SecAgg+ against plain FedAvg, 1 interleaved pairs per case")
    round_ = rf"round plain {NUMBER} s  secure {NUMBER} s  ratio {NUMBER}x"
    assert has_line(lines, rf"20 nodes  10 k params  10% dropout  7 shares t=4:  {round_}  \|.*")
    assert any(line.startswith("goal per-node masking < 0.2 s") for line in lines)
    assert re.fullmatch(rf"ratio {NUMBER}", lines[-1])


def test_privacy_utility() -> None:
    lines = run_quick("privacy_utility.py", str(require_mnist()))
    assert lines[0].startswith("--quick: 60 nodes") and lines[0].endswith("mean nothing")
    assert has_line(lines, rf"epsilon 8: calibrated noise multiplier {NUMBER}")
    run = rf"target epsilon 8 +spent {NUMBER} +z {NUMBER} +clip {NUMBER} +accuracy .*"
    for method in ("fixed 0.1", "fixed 0.4", "adaptive"):
        assert has_line(lines, rf"{method} +{run}")
    assert "| clipping | epsilon 8 | epsilon inf (no noise) |" in lines
    assert has_line(
        lines, rf"\| adaptive - best fixed \| [+-]{NUMBER} \((NOT )?within 1 point\) .*"
    )
    assert has_line(lines, rf"plain FedAvg without DP: {NUMBER}")
    assert lines[-1].startswith("command: python ") and "--quick" in lines[-1]


def test_time_to_accuracy() -> None:
    lines = run_quick("time_to_accuracy.py", str(require_mnist()))
    for name in ("fedavg", "fedavg-deadline", "fedbuff"):
        assert any(line.startswith(f"{name}: ") and "simulated to 50%" in line for line in lines)
    assert lines[-8].startswith("| strategy | simulated time to 50% | stays above from |")
    assert lines[-2].startswith("command: python ") and "--quick" in lines[-2]
    assert re.fullmatch(rf"ratio ({NUMBER}|inf)", lines[-1])
