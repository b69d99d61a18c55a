"""App bundles: an app's code packed to travel from ``pollinate run`` to the link and the nodes.

A bundle is a zip of the app folder's source files (``pyproject.toml``, ``*.py`` and small
text files such as ``*.md`` and ``*.json``), without run folders, caches, hidden folders
or virtual environments: data stays on the nodes. The zip is deterministic (sorted names,
fixed timestamps), so the same code always has the same SHA-256 digest, which names the
bundle everywhere: the link stores it under that name, nodes fetch it by it and check it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, StorageError, WireError

__all__ = [
    "MAX_BUNDLE_SIZE",
    "MAX_FILES",
    "MAX_FILE_SIZE",
    "MAX_UNPACKED_SIZE",
    "AppBundle",
    "check_bundle",
    "pack_app",
    "unpack_app",
]

MAX_BUNDLE_SIZE = 32 << 20
"""32 MiB: an app's code; data and models do not travel in bundles."""
MAX_UNPACKED_SIZE = 128 << 20
"""128 MiB: the most a bundle's files may hold unpacked, counted as they are inflated (so a
small zip that inflates to gigabytes is refused, whatever its headers claim)."""
MAX_FILE_SIZE = 32 << 20
"""32 MiB: the most one file of a bundle may hold unpacked."""
MAX_FILES = 10_000
"""The most files a bundle may hold."""
MAX_DEPTH = 32
"""Folders deep a bundle's file may be."""
MAX_NAME_BYTES = 255
"""Bytes in one part of a file's name: what common file systems take."""

SOURCE_SUFFIXES = frozenset(
    {".py", ".toml", ".md", ".txt", ".json", ".yaml", ".yml", ".cfg", ".ini"}
)
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "venv"})
"""Folders never packed, at any depth (and neither are hidden ones or ``*.egg-info``)."""
SKIPPED_TOP_DIRS = frozenset({"runs", "build", "dist", "data", "certs"})
"""Top-level folders never packed: results, build output, data and key material."""

_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class AppBundle:
    """An app's packed code and its SHA-256 digest (hex), which names it."""

    data: bytes
    digest: str

    @classmethod
    def of(cls, data: bytes) -> AppBundle:
        """The bundle holding ``data``, its digest computed."""
        return cls(data, hashlib.sha256(data).hexdigest())


def pack_app(app_dir: Path) -> AppBundle:
    """Pack the source files of the app in ``app_dir`` into a deterministic zip."""
    root = app_dir.resolve()
    files = sorted(_source_files(root))
    if not any(path.name == "pyproject.toml" and path.parent == root for path in files):
        raise ConfigError(f"no pyproject.toml in {str(app_dir)!r}: it is not a pollinate app")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), _ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    _check_unpacked(root, files)
    data = buffer.getvalue()
    if len(data) > MAX_BUNDLE_SIZE:
        biggest = max(files, key=lambda p: p.stat().st_size)
        raise ConfigError(
            f"the app's code packs to {len(data) / 2**20:.1f} MiB, over the "
            f"{MAX_BUNDLE_SIZE >> 20} MiB a bundle may hold (largest file: "
            f"{biggest.relative_to(root)}): keep data and models out of the app folder, "
            "on the nodes"
        )
    return AppBundle.of(data)


def _check_unpacked(root: Path, files: list[Path]) -> None:
    """Refuse, at packing, an app that the link and nodes would refuse to unpack."""
    sizes = {path: path.stat().st_size for path in files}
    biggest = max(sizes, key=sizes.__getitem__)
    total = sum(sizes.values())
    if len(files) > MAX_FILES or total > MAX_UNPACKED_SIZE or sizes[biggest] > MAX_FILE_SIZE:
        raise ConfigError(
            f"the app's code unpacks to {total / 2**20:.1f} MiB in {len(files):,} files "
            f"(largest: {biggest.relative_to(root)}, {sizes[biggest] / 2**20:.1f} MiB); a bundle "
            f"may hold {MAX_UNPACKED_SIZE >> 20} MiB in {MAX_FILES:,} files, "
            f"{MAX_FILE_SIZE >> 20} MiB a file: keep data and models out of the app folder, "
            "on the nodes"
        )


def _source_files(root: Path) -> list[Path]:
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".")
            and d not in SKIPPED_DIRS
            and not d.endswith(".egg-info")
            and not (folder == str(root) and d in SKIPPED_TOP_DIRS)
        ]
        for name in names:
            path = Path(folder) / name
            if path.suffix in SOURCE_SUFFIXES and not name.startswith(".") and path.is_file():
                found.append(path)
    return found


def unpack_app(bundle: AppBundle, cache_dir: Path) -> Path:
    """The folder holding ``bundle``'s files under ``cache_dir``, unpacked once per digest.

    The digest is checked first; every name in the zip must stay inside the folder, and the
    files must keep to ``MAX_FILES``, ``MAX_FILE_SIZE`` and ``MAX_UNPACKED_SIZE``, counted in
    the bytes that come out as each file is inflated, not in what the zip's headers claim.
    """
    if hashlib.sha256(bundle.data).hexdigest() != bundle.digest:
        raise WireError(f"app bundle {bundle.digest[:12]} does not match its digest")
    target = cache_dir / bundle.digest
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache_dir))
    try:
        _extract(bundle.data, staging)
        try:
            staging.rename(target)
        except OSError:  # another process unpacked the same digest first
            if not target.is_dir():
                raise
    except zipfile.BadZipFile as err:
        raise WireError(f"app bundle {bundle.digest[:12]} is not a valid zip: {err}") from None
    except WireError as err:
        raise WireError(f"app bundle {bundle.digest[:12]}: {err}") from None
    except OSError as err:  # a full disk is the machine's trouble, not the bundle's
        raise StorageError.writing(err.filename or target, err) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def check_bundle(bundle: AppBundle) -> None:
    """WireError if ``bundle`` would not unpack (bad zip, names outside, over the limits).

    It inflates every file and writes none: the link checks a submission before queueing it.
    """
    try:
        _extract(bundle.data, None)
    except zipfile.BadZipFile as err:
        raise WireError(f"app bundle {bundle.digest[:12]} is not a valid zip: {err}") from None
    except WireError as err:
        raise WireError(f"app bundle {bundle.digest[:12]}: {err}") from None


_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra field length
_STEP = 1 << 20
"""Bytes inflated at a time: what a bundle may hold is counted as it comes out."""


def _extract(data: bytes, folder: Path | None) -> None:
    """Write the zip's files under ``folder`` (None: nowhere), counting what they inflate to."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = _members(archive)
    unpacked = 0
    for info in members:
        out = None
        if folder is not None:
            path = folder.joinpath(*PurePosixPath(info.filename).parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            out = path.open("wb")
        size, crc = 0, 0
        with out or contextlib.nullcontext():
            for piece in _inflated(_stored_bytes(data, info), info):
                size, unpacked = size + len(piece), unpacked + len(piece)
                _check_size(info.filename, size, unpacked)
                crc = zlib.crc32(piece, crc)
                if out is not None:
                    out.write(piece)
        if size != info.file_size or crc != info.CRC:
            raise WireError(f"entry {info.filename!r} does not match its size or CRC")


def _members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The zip's files, each name inside the folder, their claimed sizes within the limits."""
    members = [info for info in archive.infolist() if not info.is_dir()]
    if len(members) > MAX_FILES:
        raise WireError(f"it holds {len(members):,} files, more than the {MAX_FILES:,} allowed")
    claimed = 0
    files: set[PurePosixPath] = set()
    for info in members:
        name = PurePosixPath(info.filename)
        if name.is_absolute() or ".." in name.parts:
            raise WireError(f"entry {info.filename!r} leaves its folder")
        _check_name(info.filename, name)
        if name in files:
            raise WireError(f"entry {info.filename!r} comes twice")
        files.add(name)
        claimed += info.file_size
        _check_size(info.filename, info.file_size, claimed)
    folders = {parent for name in files for parent in name.parents}
    clash = sorted(str(name) for name in files & folders)
    if clash:
        raise WireError(f"entry {clash[0]!r} is both a file and a folder")
    return members


def _check_name(text: str, name: PurePosixPath) -> None:
    """A name every file system takes: some parts, none too long, not too deep."""
    if not name.parts or name.parts == (".",) or "\\" in text or "\x00" in text:
        raise WireError(f"entry {text[:80]!r} is not a file name")
    if len(name.parts) > MAX_DEPTH:
        raise WireError(f"entry {text[:80]!r} is more than {MAX_DEPTH} folders deep")
    if any(len(part.encode()) > MAX_NAME_BYTES for part in name.parts):
        raise WireError(f"entry {text[:80]!r} has a name longer than {MAX_NAME_BYTES} bytes")


def _check_size(name: str, size: int, unpacked: int) -> None:
    if size > MAX_FILE_SIZE:
        raise WireError(
            f"{name!r} unpacks to more than {MAX_FILE_SIZE >> 20} MiB (the most one file of a "
            "bundle may hold)"
        )
    if unpacked > MAX_UNPACKED_SIZE:
        raise WireError(
            f"it unpacks to more than {MAX_UNPACKED_SIZE >> 20} MiB (the most a bundle may hold)"
        )


def _stored_bytes(data: bytes, info: zipfile.ZipInfo) -> memoryview:
    """The member's bytes as stored (compressed), found from its local header."""
    start = info.header_offset
    if start + _LOCAL_HEADER.size > len(data):
        raise WireError(f"entry {info.filename!r} points outside the zip")
    signature, name_length, extra_length = _LOCAL_HEADER.unpack_from(data, start)
    begin = start + _LOCAL_HEADER.size + name_length + extra_length
    end = begin + info.compress_size
    if signature != b"PK\x03\x04" or end > len(data):
        raise WireError(f"entry {info.filename!r} points outside the zip")
    return memoryview(data)[begin:end]


def _inflated(stored: memoryview, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The member's bytes, at most ``_STEP`` at a time, whatever its header says."""
    if info.compress_type == zipfile.ZIP_STORED:
        for start in range(0, len(stored), _STEP):
            yield bytes(stored[start : start + _STEP])
        return
    if info.compress_type != zipfile.ZIP_DEFLATED:
        raise WireError(
            f"entry {info.filename!r} uses compression {info.compress_type}, not deflate"
        )
    inflater = zlib.decompressobj(-15)
    try:
        for start in range(0, len(stored), 1 << 16):
            pending: bytes | memoryview = stored[start : start + (1 << 16)]
            while pending and not inflater.eof:
                yield inflater.decompress(pending, _STEP)
                pending = inflater.unconsumed_tail
        yield inflater.flush()
    except zlib.error as err:
        raise WireError(f"entry {info.filename!r} does not inflate: {err}") from None
    if not inflater.eof:
        raise WireError(f"entry {info.filename!r} ends before its deflate stream does")
