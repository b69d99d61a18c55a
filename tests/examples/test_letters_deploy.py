"""letters-deploy end to end: server.py and three client.py processes, mutual TLS, 127.0.0.1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from pollinate.deploy import make_dev_certs
from pollinate.server import load_arrays

from .conftest import REPO

EXAMPLE = REPO / "examples" / "letters-deploy"
ROUNDS = 5
MIN_FINAL_ACCURACY = 0.90
"""Measured: 0.951 on the test folder after 5 rounds, and 0.951 aggregated (every run)."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _start(script: str, args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """Run one of the example's scripts in ``cwd``, its stdout and stderr into ``log``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(EXAMPLE / script), *args],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _wait_for_port(log: Path, server: subprocess.Popen[bytes], timeout_s: float) -> int:
    """The port server.py says it listens on (it was given port 0)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(
            r"listening on port (\d+) \(mutual TLS\)", log.read_text(errors="replace")
        )
        if found:
            return int(found.group(1))
        if server.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"server.py did not start listening:\n{log.read_text(errors='replace')}")


@pytest.mark.slow
def test_server_and_three_clients_train_over_tls(tmp_path: Path) -> None:
    prepared = subprocess.run(
        [sys.executable, str(EXAMPLE / "prepare_data.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert prepared.returncode == 0, prepared.stderr
    make_dev_certs(tmp_path / "certs", nodes=3)

    processes: list[subprocess.Popen[bytes]] = []
    codes: list[int | None] = []
    try:
        server_log = tmp_path / "server.log"
        server = _start(
            "server.py",
            ["--address", "127.0.0.1:0", "--certs", "certs", "--rounds", str(ROUNDS)],
            tmp_path,
            server_log,
        )
        processes.append(server)
        port = _wait_for_port(server_log, server, timeout_s=30)
        client_logs = [tmp_path / f"client-{i}.log" for i in range(3)]
        for i, log in enumerate(client_logs):
            args = ["--server", f"127.0.0.1:{port}", "--data-dir", f"data/client-{i}"]
            args += ["--root-cert", "certs/ca.pem"]
            args += ["--cert", f"certs/node{i + 1}.pem", "--key", f"certs/node{i + 1}.key"]
            processes.append(_start("client.py", args, tmp_path, log))
        deadline = time.monotonic() + 120
        codes = [
            process.wait(timeout=max(deadline - time.monotonic(), 0.1)) for process in processes
        ]
    except subprocess.TimeoutExpired:
        codes = [process.poll() for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    logs = {log.name: log.read_text(errors="replace") for log in tmp_path.glob("*.log")}
    assert codes == [0, 0, 0, 0], "\n".join(f"--- {name}\n{text}" for name, text in logs.items())
    for i in range(3):
        assert "done: the server ended the run" in logs[f"client-{i}.log"]
    output = logs["server.log"]

    # The strategy logs the clients' aggregated accuracy and saves the model, every round.
    aggregated = re.findall(r"round (\d+): aggregated accuracy ([\d.]+) \(3 clients", output)
    assert [int(r) for r, _ in aggregated] == list(range(1, ROUNDS + 1)), output
    models = tmp_path / "out" / "models"
    assert sorted(p.name for p in models.iterdir()) == [
        f"round-{r}.npz" for r in range(1, ROUNDS + 1)
    ]
    assert load_arrays(models / f"round-{ROUNDS}.npz") == load_arrays(tmp_path / "out/model.npz")

    final = re.search(r"final test accuracy ([\d.]+)", output)
    assert final is not None, output
    assert float(final.group(1)) >= MIN_FINAL_ACCURACY, output
    assert float(aggregated[-1][1]) >= MIN_FINAL_ACCURACY - 0.05, output
    history = tmp_path / "out" / "history.png"
    assert history.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(history) as image:
        image.verify()  # a whole, readable PNG, not just its first bytes
    assert (tmp_path / "out" / "metrics.jsonl").read_text().count("\n") == ROUNDS + 1
