"""SIGKILL the link mid-run, restart it with the same database: the run resumes, exactly."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pollinate.server import load_arrays

from .processes import QUICKSTART, free_port, start_pollinate

ROUNDS = 6


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 3])
def test_a_killed_link_resumes_after_its_last_completed_round(tmp_path, kill_after):
    port, out, db = free_port(), tmp_path / "run", tmp_path / "link.db"
    link_args = [
        "link",
        QUICKSTART,
        "--address",
        f"127.0.0.1:{port}",
        "--insecure",
        "--db",
        db,
        "--min-nodes",
        3,
        "--out",
        out,
        "--run-config",
        f"num-server-rounds={ROUNDS}",
    ]
    nodes = [
        start_pollinate(
            "node",
            QUICKSTART,
            "--link",
            f"127.0.0.1:{port}",
            "--insecure",
            "--node-config",
            f"partition-id={p} num-partitions=3",
            "--once",
        )
        for p in range(3)
    ]
    link = start_pollinate(*link_args)
    try:
        _wait_for_round(out / "metrics.jsonl", kill_after, link)
        link.send_signal(signal.SIGKILL)  # whatever phase the next round is in
        link.communicate()
        restarted = start_pollinate(*link_args)
        _, stderr = restarted.communicate(timeout=120)
        assert restarted.returncode == 0, stderr
        for node in nodes:
            node.wait(timeout=30)
            assert node.returncode == 0, node.communicate()[1]
    finally:
        for process in (link, *nodes):
            process.kill()
            process.communicate()
    assert "resuming run" in stderr
    rounds = [
        json.loads(line)["round"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert rounds == list(range(ROUNDS + 1))  # each round exactly once
    reference = load_arrays(_simulated(tmp_path / "sim") / "model.npz")
    resumed = load_arrays(out / "model.npz")
    for name, array in reference.items():  # nothing lost or counted twice: the same model
        np.testing.assert_allclose(resumed[name].numpy(), array.numpy(), rtol=0, atol=1e-6)


def _wait_for_round(metrics, server_round, process, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        if metrics.is_file():
            done = [json.loads(line)["round"] for line in metrics.read_text().splitlines()]
            if done and done[-1] >= server_round:
                return
        time.sleep(0.05)
    raise AssertionError(f"round {server_round} did not finish in {timeout} s")


def _simulated(out):
    command = ["run", QUICKSTART, "--out", out, "--run-config", f"num-server-rounds={ROUNDS}"]
    subprocess.run(
        [sys.executable, "-m", "pollinate.cli", *command], check=True, capture_output=True
    )
    return out
