"""Find a dataset's files locally, or download each once into a cache, checked by SHA-256.

A download goes to a temporary file next to its target, is hashed as it streams, and is
renamed into place only when its digest is one the table accepts: a crash or a bad mirror
never leaves a file that a later run would trust. Local files are not hashed: a recompressed
copy of the same data is fine.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

__all__ = ["RemoteFile", "cache_root", "fetch"]

log = logging.getLogger("pollinate.datasets")

TIMEOUT_S = 60.0
"""Seconds a connection may stall before the download counts as failed."""

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One file of a dataset: its name, the URLs that serve it, and its accepted SHA-256s."""

    name: str
    urls: tuple[str, ...]
    sha256: tuple[str, ...]


def cache_root() -> Path:
    """Where downloads go: ``$POLLINATE_DATA``, or ``~/.cache/pollinate``."""
    return Path(os.environ.get("POLLINATE_DATA") or "~/.cache/pollinate").expanduser()


def fetch(
    dataset: str,
    files: Sequence[RemoteFile],
    data_dir: str | os.PathLike[str] | None,
    download: bool,
) -> Path:
    """The folder holding every file of ``files``, downloading the missing ones if allowed.

    The folder is ``data_dir`` when given, else ``cache_root() / dataset``.
    """
    folder = Path(data_dir).expanduser() if data_dir is not None else cache_root() / dataset
    missing = [f for f in files if not (folder / f.name).is_file()]
    if missing and not download:
        raise ConfigError(
            f"{dataset}: {folder / missing[0].name} not found and download=False; "
            + where_to_put(dataset, files, folder)
        )
    for remote in missing:
        _download(dataset, remote, folder, files)
    return folder


def where_to_put(dataset: str, files: Sequence[RemoteFile], folder: Path) -> str:
    """The manual fix: which files to fetch from where, and the folder to put them in."""
    listing = ", ".join(f"{f.name} ({f.urls[0]})" for f in files)
    return f"download {listing} and put them in {folder}, or pass data_dir= the folder holding them"


def _download(dataset: str, remote: RemoteFile, folder: Path, files: Sequence[RemoteFile]) -> None:
    """Fetch one file from the first URL that works, or raise naming every URL tried."""
    folder.mkdir(parents=True, exist_ok=True)
    problems = []
    for url in remote.urls:
        log.info("downloading %s from %s", remote.name, url)
        try:
            _fetch_verified(url, folder / remote.name, remote.sha256)
            return
        except (OSError, ValueError) as exc:  # URLError, timeouts, HTTP errors, bad digest
            problems.append(f"{url}: {exc}")
    raise ConfigError(
        f"{dataset}: could not download {remote.name} ({'; '.join(problems)}); "
        + where_to_put(dataset, files, folder)
    )


def _fetch_verified(url: str, target: Path, accepted: tuple[str, ...]) -> None:
    """Stream ``url`` into a temporary file, check its SHA-256, then rename it to ``target``."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() not in accepted:
            raise ValueError(
                f"SHA-256 mismatch: got {digest.hexdigest()}, expected {' or '.join(accepted)}"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
