"""Run folders and clients for the dashboard's tests."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from starlette.routing import BaseRoute

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from pollinate.dashboard import DashboardServer

BASE_URL = "http://127.0.0.1:8123"


def round_line(
    n: int, accuracy: float, failures: Sequence[str] = (), sim: float | None = None
) -> str:
    """One metrics.jsonl line as a run writes it."""
    line: dict[str, object] = {"round": n, "wall_time_s": 0.5 + n / 10}
    if sim is not None:
        line["simulated_time_s"] = sim
    line["train"] = (
        {
            "ok": 3,
            "failed": len(failures),
            "metrics": {"loss": 1.0 / (n + 1), "num-examples": 30},
            "failures": list(failures),
        }
        if n
        else None
    )
    line["evaluate"] = None
    line["server"] = {"accuracy": accuracy}
    return json.dumps(line) + "\n"


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """Write a run folder: run.json, metrics.jsonl with ``rounds`` rounds, checkpoints."""

    def make(
        name: str = "20260101-120000-0000abcd",
        rounds: int = 3,
        status: str = "finished",
        parent: Path | None = None,
    ) -> Path:
        run = (parent or tmp_path) / name
        (run / "checkpoints").mkdir(parents=True)
        info = {
            "run_id": 43981,
            "status": status,
            "error": None,
            "app": {"name": "quickstart", "serverapp": "a:b", "clientapp": "a:c"},
            "federation": {"name": "local-simulation", "num_nodes": 3},
            "run_config": {"num-server-rounds": rounds, "learning-rate": 0.1},
            "started_at": "2026-01-01T12:00:00+00:00",
            "wall_time_s": 12.5,
            "final": {"server.accuracy": 0.9},
        }
        (run / "run.json").write_text(json.dumps(info))
        (run / "metrics.jsonl").write_text(
            "".join(round_line(n, 0.5 + n / 10) for n in range(rounds + 1))
        )
        for n in range(rounds + 1):
            (run / "checkpoints" / f"round-{n:04d}.npz").write_bytes(b"PK-fake-" + bytes([n]))
        return run

    return make


@pytest.fixture
def client() -> Iterator[Callable[..., TestClient]]:
    """A logged-in TestClient of a DashboardServer's app over ``routes`` (driven in process)."""
    servers: list[DashboardServer] = []

    def make(routes: list[BaseRoute], login: bool = True, raise_errors: bool = True) -> TestClient:
        server = DashboardServer(routes)
        servers.append(server)
        test = TestClient(  # paths are the server's, under its secret prefix
            server.app, base_url=BASE_URL + server.keys.prefix, raise_server_exceptions=raise_errors
        )
        test.server = server  # type: ignore[attr-defined]
        test.root = server.keys.prefix  # type: ignore[attr-defined]
        if login:
            answer = test.get(f"/login?token={server.keys.token}", follow_redirects=False)
            assert answer.status_code == 303
        return test

    yield make
    for server in servers:
        server.stop()
