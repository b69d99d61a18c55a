import gzip
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .._shared import require_mnist


@pytest.fixture
def mnist_dir() -> Path:
    """The real MNIST files beside the repository (see tests/_shared.py)."""
    return require_mnist()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """No test may read or write the user's real download cache."""
    monkeypatch.setenv("POLLINATE_DATA", str(tmp_path / "cache"))


def _idx(type_code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    header = bytes([0, 0, type_code, len(shape)])
    return header + b"".join(d.to_bytes(4, "big") for d in shape) + payload


@pytest.fixture
def fake_mnist_dir(tmp_path) -> Path:
    """Four tiny gzip IDX files (6 train, 4 test): image i is all i, its label i % 10."""
    folder = tmp_path / "fake-mnist"
    folder.mkdir()
    n_train, n_test = 6, 4
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = b"".join(bytes([i]) * 28 * 28 for i in range(n))
        labels = bytes(i % 10 for i in range(n))
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(_idx(0x08, (n, 28, 28), images))
        )
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(_idx(0x08, (n,), labels))
        )
    return folder


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


class FileServer:
    """A static HTTP server on 127.0.0.1 that counts the requests it answers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(_QuietHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def file_server(tmp_path) -> Iterator[FileServer]:
    root = tmp_path / "served"
    root.mkdir()
    with FileServer(root) as server:
        yield server
