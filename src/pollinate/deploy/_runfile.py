"""``run.json`` in a link's run folder: what ran, how it went, as ``pollinate run`` writes it.

So ``pollinate report`` and ``pollinate dashboard`` read a deployed run's folder as they read
a simulation's: the app, its status, config, times and final metrics.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

from .._durable import write_file
from .._json import finite
from ..errors import StorageError
from ..server import Result
from ._store import RunRow

__all__ = ["RUN_FILE", "write_run_file"]

log = logging.getLogger("pollinate.link")

RUN_FILE = "run.json"
WRITTEN_FOR = ("running", "finished", "failed", "stopped")
"""The statuses a run folder records; a queued run has no folder yet."""


def write_run_file(row: RunRow, rounds_done: int, result: Result | None) -> None:
    """Write ``run.json`` for the run ``row`` into its folder, if it keeps one.

    A folder the link cannot write (a full disk) costs a warning, not the run: its rounds
    are in ``metrics.jsonl`` and the link's database.
    """
    if row.out_dir is None or row.status not in WRITTEN_FOR:
        return
    ended = row.ended_at
    record = {
        "run_id": row.run_id,
        "status": row.status,
        "error": row.error,
        "app": {
            "name": row.name,
            "serverapp": row.app.serverapp if row.app else None,
            "clientapp": row.app.clientapp if row.app else None,
        },
        "federation": {"name": "link", "min_nodes": row.min_nodes},
        "run_config": row.run_config,
        "submitted_at": _iso(row.submitted_at),
        "started_at": _iso(row.started_at),
        "ended_at": _iso(ended),
        "wall_time_s": None if row.started_at is None or ended is None else ended - row.started_at,
        "num_rounds": rounds_done,
        "final": result.final_metrics() if result is not None else {},
    }
    text = json.dumps(finite(record), indent=2) + "\n"
    try:
        write_file(Path(row.out_dir) / RUN_FILE, lambda f: f.write(text.encode("utf-8")))
    except StorageError as err:
        log.warning("run %d: %s (its rounds are kept in metrics.jsonl)", row.run_id, err)


def _iso(moment: float | None) -> str | None:
    """A unix time as local ISO 8601 to the second, as ``pollinate run`` writes it."""
    if moment is None:
        return None
    return dt.datetime.fromtimestamp(moment).astimezone().isoformat("T", "seconds")
