import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pollinate import ClientApp
from pollinate.deploy import Backoff, Link, run_node, serve_link

from .node_apps import app as node_app
from .submitted import start_bare_nodes

NODE_APPS = Path(__file__).parent / "node_apps.py"


@pytest.fixture
def link():
    """A plain-text link on a free 127.0.0.1 port: small chunks, fast heartbeats."""
    server = Link(
        "127.0.0.1:0", credentials=None, chunk_size=4096, heartbeat_s=0.2, node_timeout_s=1.5
    )
    server.start()
    yield server
    server.stop(grace_s=0.5)


@pytest.fixture
def start_nodes(link):
    """Start nodes in threads (partition ids 0..n-1); they leave when the link says goodbye.

    They answer with ``node_app`` unless ``app`` says otherwise.
    """
    threads = []

    def start(count: int, first: int = 0, app: ClientApp = node_app) -> None:
        for partition in range(first, first + count):
            thread = threading.Thread(
                target=run_node,
                args=(f"127.0.0.1:{link.port}", app),
                kwargs={
                    "node_config": {"partition-id": partition},
                    "chunk_size": 4096,
                    "backoff": Backoff(initial_s=0.05, max_s=0.2, give_up_s=5),
                },
                daemon=True,
            )
            thread.start()
            threads.append(thread)

    yield start
    link.stop(grace_s=0.5)
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive(), "a node did not leave after the link's goodbye"


@pytest.fixture
def node_process(link):
    """Start a node in its own process (so a test can kill or pause it)."""
    processes = []

    def start(partition: int) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, str(NODE_APPS), f"127.0.0.1:{link.port}", str(partition)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def link_port(tmp_path):
    """The port of a plain-text link that takes submitted runs, with two bare nodes."""
    ports = []
    with serve_link(
        "127.0.0.1:0", insecure=True, runs_dir=tmp_path / "runs", on_listening=ports.append
    ) as runs:
        runs.start()
        nodes = start_bare_nodes(ports[0], 2, tmp_path / "cache")
        yield ports[0]
    for node in nodes:
        node.join(timeout=10)
