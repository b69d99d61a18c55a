"""App bundles: an app's code packed to travel from ``pollinate run`` to the link and the nodes.

A bundle is a zip of the app folder's source files (``pyproject.toml``, ``*.py`` and small
text files such as ``*.md`` and ``*.json``), without run folders, caches, hidden folders
or virtual environments: data stays on the nodes. The zip is deterministic (sorted names,
fixed timestamps), so the same code always has the same SHA-256 digest, which names the
bundle everywhere: the link stores it under that name, nodes fetch it by it and check it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, WireError

__all__ = ["MAX_BUNDLE_SIZE", "AppBundle", "pack_app", "unpack_app"]

MAX_BUNDLE_SIZE = 32 << 20
"""32 MiB: an app's code; data and models do not travel in bundles."""

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

    The digest is checked first, and every name in the zip must stay inside the folder.
    """
    if hashlib.sha256(bundle.data).hexdigest() != bundle.digest:
        raise WireError(f"app bundle {bundle.digest[:12]} does not match its digest")
    target = cache_dir / bundle.digest
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache_dir))
    try:
        with zipfile.ZipFile(io.BytesIO(bundle.data)) as archive:
            for info in archive.infolist():
                name = PurePosixPath(info.filename)
                if name.is_absolute() or ".." in name.parts or info.is_dir():
                    if info.is_dir():
                        continue
                    raise WireError(f"app bundle entry {info.filename!r} leaves its folder")
                path = staging.joinpath(*name.parts)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(archive.read(info))
        try:
            staging.rename(target)
        except OSError:  # another process unpacked the same digest first
            if not target.is_dir():
                raise
    except zipfile.BadZipFile as err:
        raise WireError(f"app bundle {bundle.digest[:12]} is not a valid zip: {err}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
