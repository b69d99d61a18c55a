"""Files that survive a crash or a full disk, and the named moments where tests inject one.

``write_file`` writes a temp file beside the target, fsyncs it, renames it over the target
and fsyncs the folder: a reader or a crash sees the old file or the new one whole, and a
write that fails (a full disk) leaves the old one as it was. ``append_line`` appends and
fsyncs, and cuts a half-written line back off when the write fails. Both raise
``StorageError`` naming the file. ``clean_temp_files`` removes what a crash left.

``fault_point(point, subject)`` marks each step of a write: ``write.start`` (temp file open,
empty), ``write.written`` (temp file whole and fsynced), ``write.renamed`` (renamed, folder
not yet fsynced), ``append.written`` (line written, not fsynced); the link's database adds
``store.write`` and ``store.committed``. It does nothing unless the environment arms it,
which only tests do (in a child process, or with monkeypatch):

- ``POLLINATE_FAULT_AT``: the point, e.g. ``write.written``;
- ``POLLINATE_FAULT_ON``: a glob the subject (a file's path) must match (default ``*``);
- ``POLLINATE_FAULT``: ``kill`` (SIGKILL this process's group, the default: the link and
  any process it started die together, as in a power cut; start it in a session of its
  own) or ``enospc`` (raise the OSError a full disk raises);
- ``POLLINATE_FAULT_AFTER``: how many matching hits to let pass first (default 0).

It fires once: it disarms itself (the variables leave this process's environment).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import StorageError

__all__ = [
    "TEMP_SUFFIXES",
    "append_line",
    "clean_temp_files",
    "fault_point",
    "make_folder",
    "write_file",
]

TEMP_SUFFIXES = (".tmp", ".partial")
"""Files written whole before a rename: one left behind is a crash's leftover (``.tmp`` ours,
``.partial`` an older link's bundles)."""


def write_file(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` whole with ``write(file)``: temp file, fsync, rename, fsync the folder.

    Two writers of one path each write their own temp file; the last rename wins.
    """
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")  # one per writer
    try:
        make_folder(path.parent)
        with tmp.open("xb") as f:
            fault_point("write.start", path)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        fault_point("write.written", path)
        os.replace(tmp, path)
        fault_point("write.renamed", path)
        sync_folder(path.parent)
    except OSError as err:
        _discard(tmp)
        raise StorageError.writing(path, err) from err
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    """Remove a temp file a failed write left, if there is one to remove.

    Its folder may be what failed (a file where a folder should be): that error, not this
    one's, is the one to report.
    """
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def append_line(path: Path, line: str) -> None:
    """Append ``line`` (and a newline) to ``path`` and fsync it; on failure, cut it back off."""
    fresh = not path.exists()
    try:
        with path.open("ab") as f:
            size = f.tell()
            try:
                f.write(line.encode("utf-8") + b"\n")
                f.flush()
                fault_point("append.written", path)
                os.fsync(f.fileno())
            except OSError:
                f.truncate(size)  # a half line would spoil the file for every reader
                raise
        if fresh:
            sync_folder(path.parent)
    except OSError as err:
        raise StorageError.writing(path, err) from err


def make_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each fsynced into its own parent."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        try:
            new.mkdir(exist_ok=True)
            sync_folder(new.parent)
        except OSError as err:
            raise StorageError.writing(new, err) from err


def sync_folder(folder: Path) -> None:
    """Fsync a folder, so the names in it (a rename, a new file) survive an OS crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_temp_files(*folders: Path) -> list[Path]:
    """Remove the temp files a crashed write left in ``folders`` (not below); those removed."""
    removed = []
    for folder in folders:
        for path in folder.glob("*") if folder.is_dir() else ():
            if path.suffix in TEMP_SUFFIXES and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def fault_point(point: str, subject: str | Path = "") -> None:
    """A named moment of a write: tests arm it to kill the process or fill the disk here."""
    if os.environ.get("POLLINATE_FAULT_AT") != point:
        return
    if not fnmatch.fnmatch(str(subject), os.environ.get("POLLINATE_FAULT_ON", "*")):
        return
    after = int(os.environ.get("POLLINATE_FAULT_AFTER", "0"))
    if after > 0:
        os.environ["POLLINATE_FAULT_AFTER"] = str(after - 1)
        return
    os.environ.pop("POLLINATE_FAULT_AT", None)  # once
    if os.environ.get("POLLINATE_FAULT", "kill") == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(subject))
    os.killpg(os.getpgrp(), signal.SIGKILL)
