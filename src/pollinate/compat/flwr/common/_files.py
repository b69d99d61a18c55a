"""Certificates Flower takes as bytes, written where pollinate's TLS reads files."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["private_folder"]


@contextlib.contextmanager
def private_folder(files: Mapping[str, bytes]) -> Iterator[Path]:
    """A folder only this user can read (0700), holding ``files``; removed on exit."""
    folder = Path(tempfile.mkdtemp(prefix="pollinate-flwr-"))
    try:
        os.chmod(folder, 0o700)
        for name, content in files.items():
            path = folder / name
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(content)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
