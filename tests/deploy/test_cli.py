"""`pollinate link` and `pollinate node`: the quickstart, unchanged, over gRPC with mutual TLS."""

import json
import subprocess
import sys

import pytest

from pollinate.deploy import make_dev_certs

from .processes import QUICKSTART, free_port, start_pollinate


@pytest.mark.slow
def test_the_quickstart_runs_over_the_network_as_it_does_in_simulation(tmp_path, quickstart_run):
    certs = make_dev_certs(tmp_path / "certs", nodes=3)  # mutual TLS
    port = free_port()
    link = start_pollinate(
        "link",
        QUICKSTART,
        "--address",
        f"127.0.0.1:{port}",
        "--certs",
        tmp_path / "certs",
        "--node-certs",
        tmp_path / "certs",
        "--run-config",
        "num-server-rounds=2",
        "--min-nodes",
        3,
        "--out",
        tmp_path / "run",
    )
    nodes = [
        start_pollinate(
            "node",
            QUICKSTART,
            "--link",
            f"localhost:{port}",
            "--root-cert",
            certs.ca_cert,
            "--cert",
            certs.node_certs[p],
            "--key",
            certs.node_keys[p],
            "--node-config",
            f"partition-id={p} num-partitions=3",
            "--once",
        )
        for p in range(3)
    ]
    try:
        out, err = link.communicate(timeout=120)
        assert link.returncode == 0, err
        for node in nodes:
            node.wait(timeout=30)
            assert node.returncode == 0, node.stderr.read()
    finally:
        for process in (link, *nodes):
            process.kill()
            process.communicate()
    assert "Finished 2 rounds" in out
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    deployed = json.loads(lines[-1])["server"]
    # The same numbers as the simulation, up to the order FedAvg adds the replies in (node
    # ids: 1..N in simulation, derived from each node's key here).
    assert deployed.keys() == quickstart_run.keys()
    for key, value in quickstart_run.items():
        assert deployed[key] == pytest.approx(value, rel=1e-5), key


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """The quickstart's last round of centralized metrics, in simulation."""
    out = tmp_path_factory.mktemp("sim") / "run"
    command = ["run", QUICKSTART, "--out", out, "--run-config", "num-server-rounds=2"]
    subprocess.run(
        [sys.executable, "-m", "pollinate.cli", *command],
        check=True,
        capture_output=True,
    )
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["server"]


def test_node_needs_tls_or_an_explicit_insecure(tmp_path):
    node = start_pollinate("node", QUICKSTART, "--link", "127.0.0.1:9")
    _, err = node.communicate(timeout=30)
    assert node.returncode == 1
    assert "give --root-cert" in err and "--insecure" in err


@pytest.mark.timeout(120)
def test_sigterm_stops_a_link_as_ctrl_c_does_keeping_its_state(tmp_path):
    import signal
    import sqlite3

    port = free_port()
    db = tmp_path / "link.db"
    link = start_pollinate(
        "link", "--insecure", "--address", f"127.0.0.1:{port}", "--db", db, "--out", tmp_path
    )
    try:
        for line in link.stderr:  # it is up once it says where it listens
            if str(port) in line:
                break
        link.send_signal(signal.SIGTERM)
        _, err = link.communicate(timeout=60)
    finally:
        link.kill()
    assert link.returncode == 143 and "terminated" in err and "Traceback" not in err
    with sqlite3.connect(db) as stored:  # it closed its database as it does on Ctrl-C
        assert stored.execute("PRAGMA integrity_check").fetchone() == ("ok",)
