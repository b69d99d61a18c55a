"""Small helpers for what the CLI shows: paths and counts."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["counted", "shown"]


def shown(path: Path) -> str:
    """``path`` relative to the current folder when it is inside it, else as it is."""
    relative = os.path.relpath(path)
    return path.as_posix() if relative.startswith("..") else Path(relative).as_posix()


def counted(count: int, noun: str) -> str:
    """``"1 round"``, ``"3 rounds"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
