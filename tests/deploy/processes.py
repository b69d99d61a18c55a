"""Helpers the deployment tests share to run `pollinate` commands as processes on 127.0.0.1."""

import socket
import subprocess
import sys
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_pollinate(*args, **options) -> subprocess.Popen:
    """``python -m pollinate.cli ARGS`` as a process, its output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "pollinate.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )
