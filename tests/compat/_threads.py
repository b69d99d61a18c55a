"""A Flower-style federation in one test: the server and its clients in threads, on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any


def free_address() -> str:
    """``127.0.0.1:PORT`` with a port free right now (Flower's start_server takes no port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def run_federation(
    start_server: Callable[[], Any], start_clients: list[Callable[[], Any]], timeout_s: float = 120
) -> Any:
    """Run the server and each client in a thread; the server's return value, or its error."""
    outcome: dict[str, Any] = {}

    def serve() -> None:
        try:
            outcome["history"] = start_server()
        except BaseException as err:  # reported to the test below
            outcome["error"] = err

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    clients = [threading.Thread(target=start, daemon=True) for start in start_clients]
    for client in clients:
        client.start()
    server.join(timeout_s)
    for client in clients:
        client.join(timeout_s)
    assert not server.is_alive(), "the server did not finish"
    assert not any(c.is_alive() for c in clients), "a client did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["history"]
