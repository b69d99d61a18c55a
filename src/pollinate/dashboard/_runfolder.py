"""Reading a run folder while it is written: capped, defensive, never an exception.

A run writes ``run.json`` (rewritten whole), ``metrics.jsonl`` (a line appended per round),
``checkpoints/round-NNNN.npz``, ``model.npz``, and ``pollinate report`` adds PNG plots. A
live run's last line may be half written: it is left for the next read. A garbage or huge
file gives a note on the page, not an error.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any

from ..server import RoundRecord

__all__ = ["RunFolder", "is_run", "last_round", "read_info", "read_run", "safe_file"]

MAX_METRICS_BYTES = 32 * 2**20
"""At most this much of metrics.jsonl is read: its last rounds, when it is bigger."""
MAX_INFO_BYTES = 2**20
MAX_LISTED = 200
_MAX_PROBLEMS = 5
COMPARISON_FILES = ("comparison.json", "comparison.png")
"""What a comparison folder holds: ``pollinate compare``'s, ``pollinate report RUN RUN``'s."""
DOWNLOADS = {".npz": "application/octet-stream", ".png": "image/png"}
"""What the dashboard serves from a run folder, and as what: nothing else leaves it."""


@dataclass(slots=True)
class RunFolder:
    """What a run folder holds, as far as it could be read just now."""

    path: Path
    info: dict[str, Any] | None = None
    rounds: list[RoundRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checkpoints: list[tuple[str, int]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    model: tuple[str, int] | None = None
    about: str = ""
    """What kind of folder it is, when not a plain run (a comparison)."""

    @property
    def status(self) -> str:
        """``running``, ``finished``, ``failed``, or ``unknown`` without a run.json."""
        status = (self.info or {}).get("status")
        return status if isinstance(status, str) else "unknown"

    @property
    def wall_time_s(self) -> float | None:
        """Seconds the run took, or has taken so far while it runs."""
        info = self.info or {}
        if self.status == "running":
            started = _parse_time(info.get("started_at"))
            return None if started is None else max(time.time() - started, 0.0)
        return finite_number(info.get("wall_time_s"))

    @property
    def simulated_time_s(self) -> float | None:
        """The simulated clock at the last round that kept one."""
        times = [r.simulated_time_s for r in self.rounds if r.simulated_time_s is not None]
        return times[-1] if times else None


def is_run(path: Path) -> bool:
    """Whether ``path`` is a run folder (run.json or metrics.jsonl) or a comparison's."""
    names = ("run.json", "metrics.jsonl", *COMPARISON_FILES)
    return any((path / name).is_file() for name in names)


def _rounds_folder(path: Path) -> Path:
    """Where the rounds are: the folder, or a ``pollinate compare`` folder's federated run."""
    federated = path / "federated"
    if not (path / "metrics.jsonl").is_file() and (federated / "metrics.jsonl").is_file():
        return federated
    return path


def read_run(path: Path) -> RunFolder:
    """Everything the run page shows, read now; problems are notes, not exceptions."""
    run = RunFolder(path)
    run.info = read_info(path, run.problems)
    rounds = _rounds_folder(path)
    run.rounds = _read_rounds(rounds / "metrics.jsonl", run.problems)
    run.checkpoints = _files(rounds / "checkpoints", "round-*.npz", path)[-MAX_LISTED:]
    model = rounds / "model.npz"
    run.model = (model.relative_to(path).as_posix(), _size(model)) if model.is_file() else None
    images = [
        *_files(path, "*.png", path),
        *_files(path / "report", "*.png", path),
        *_files(path / "confusion", "*.png", path),
    ]
    run.images = [name for name, _ in images[:12]]
    if rounds != path:
        run.about = (
            "A comparison (pollinate compare): the rounds below are the federated run's; "
            "comparison.md has every model's scores, and the plots compare them."
        )
    elif any((path / name).is_file() for name in COMPARISON_FILES):
        run.about = "A comparison of runs (pollinate report RUN RUN): its plots are below."
    return run


def read_info(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """``run.json`` as a dict, or None (with a note) when missing or unreadable."""
    file = path / "run.json"
    if not file.is_file():
        return None
    text = _read_capped(file, MAX_INFO_BYTES, problems)
    if text is None:
        return None
    try:
        info = json.loads(text)
    except (ValueError, RecursionError) as err:
        problems.append(f"run.json is not JSON ({err or 'nested too deep'}): ignored")
        return None
    if not isinstance(info, dict):
        problems.append("run.json does not hold a JSON object: ignored")
        return None
    return info


def last_round(path: Path) -> int | None:
    """The number of the last whole round in ``metrics.jsonl`` (reads only its tail)."""
    file = _rounds_folder(path) / "metrics.jsonl"
    if not file.is_file():
        return None
    try:
        with file.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(size - 65536, 0))
            tail = f.read()
    except OSError:
        return None
    for line in reversed(tail.split(b"\n")[:-1]):
        try:
            value = json.loads(line).get("round")
        except (ValueError, AttributeError, RecursionError):
            continue
        if isinstance(value, int):
            return value
    return None


def safe_file(root: Path, relative: str) -> Path | None:
    """The file ``relative`` names inside ``root`` if the dashboard may serve it, else None.

    The path is resolved (symlinks followed) and must stay inside ``root``, be a regular
    file, and have a suffix in ``DOWNLOADS``.
    """
    try:
        base = root.resolve(strict=True)
        target = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    inside = target.is_relative_to(base) and target != base
    return target if inside and target.is_file() and target.suffix in DOWNLOADS else None


def _read_rounds(file: Path, problems: list[str]) -> list[RoundRecord]:
    """The whole rounds of ``metrics.jsonl``; parsed again only when the file changed."""
    try:
        stat = file.stat()
    except OSError:
        return []
    if not S_ISREG(stat.st_mode):  # a folder or a pipe by that name: nothing to read
        problems.append("metrics.jsonl is not a regular file: not read")
        return []
    rounds, notes = _parse_rounds(file, stat.st_size, stat.st_mtime_ns)
    problems.extend(notes)
    return list(rounds)


@functools.lru_cache(maxsize=2)  # a version of a live run, and the one before
def _parse_rounds(
    file: Path, size: int, mtime_ns: int
) -> tuple[tuple[RoundRecord, ...], tuple[str, ...]]:
    """Rounds and notes of the file as it was at (size, mtime): every open page shares them."""
    problems: list[str] = []
    return tuple(_parse_file(file, problems)), tuple(problems)


def _parse_file(file: Path, problems: list[str]) -> list[RoundRecord]:
    try:
        with file.open("rb") as f:
            size = f.seek(0, 2)
            start = max(size - MAX_METRICS_BYTES, 0)
            f.seek(start)
            data = f.read(MAX_METRICS_BYTES)
    except OSError as err:
        problems.append(f"metrics.jsonl cannot be read: {err.strerror or err}")
        return []
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: empty, or a line still being written
    if start > 0:
        lines = lines[1:]  # the first one was cut by the cap
        problems.append(
            f"metrics.jsonl is {size / 2**20:.0f} MiB: only its last "
            f"{MAX_METRICS_BYTES // 2**20} MiB are shown"
        )
    rounds, bad = [], []
    for number, line in enumerate(lines, 1):
        record = _round(line)
        if record is None:
            bad.append(number)
        else:
            rounds.append(record)
    if bad:
        shown = ", ".join(map(str, bad[:_MAX_PROBLEMS])) + (", ..." if len(bad) > 5 else "")
        problems.append(f"metrics.jsonl: {len(bad)} line(s) are not rounds (line {shown}): skipped")
    return rounds


def _round(line: bytes) -> RoundRecord | None:
    try:
        payload = json.loads(line.decode("utf-8", errors="replace"))
        return RoundRecord.from_json(payload) if isinstance(payload, dict) else None
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def _read_capped(file: Path, cap: int, problems: list[str]) -> str | None:
    try:
        if file.stat().st_size > cap:
            problems.append(f"{file.name} is over {cap // 2**20} MiB: not read")
            return None
        return file.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        problems.append(f"{file.name} cannot be read: {err.strerror or err}")
        return None


def _files(folder: Path, pattern: str, root: Path) -> list[tuple[str, int]]:
    """Regular files in ``folder`` matching ``pattern``, as (path relative to root, size)."""
    try:
        found = sorted(p for p in folder.glob(pattern) if p.is_file() and not p.is_symlink())
    except OSError:
        return []
    return [(p.relative_to(root).as_posix(), _size(p)) for p in found]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _parse_time(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError, OSError):  # not a time, or one past what the OS takes
        return None


def finite_number(value: object) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int past 1e308
        return None
    return number if math.isfinite(number) else None
