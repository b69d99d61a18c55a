"""The link's database (SQLite): nodes, runs, and each completed round with its global model.

A round's model is first written to a file beside the database (``<db>.models/``, written
whole then renamed, so any size fits), then the round's row, with its record and the model's
file name, is written in one transaction: a link killed at any moment has either the whole
round or none of it. Only the latest model of a run is kept on disk. On restart the nodes
keep their ids (and tokens), and an unfinished run resumes after its last completed round.
Messages in flight when the link died are not stored: their round runs again, so nothing
is counted twice.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..context import UserConfigValue
from ..errors import ConfigError
from ..records import ArrayRecord
from ..server import ResumePoint, RoundRecord, RunObserver, load_arrays, save_arrays

__all__ = ["RunRow", "Store", "StoreRecorder"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    node_id INTEGER PRIMARY KEY, token TEXT NOT NULL, public_key BLOB, node_config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY, name TEXT NOT NULL, run_config TEXT NOT NULL,
    out_dir TEXT, status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    run_id INTEGER NOT NULL, server_round INTEGER NOT NULL, record TEXT, model TEXT,
    PRIMARY KEY (run_id, server_round)
);
"""


@dataclass(frozen=True, slots=True)
class RunRow:
    """An unfinished run the database knows."""

    run_id: int
    name: str
    run_config: dict[str, UserConfigValue]
    out_dir: str | None


class Store:
    """The link's SQLite database; safe to use from the link's threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.models_dir = self.path.with_name(self.path.name + ".models")
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as err:
            raise ConfigError(
                f"cannot open the link's database {str(self.path)!r}: {err}"
            ) from None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def save_node(
        self,
        node_id: int,
        token: str,
        public_key: bytes | None,
        node_config: dict[str, UserConfigValue],
    ) -> None:
        """Remember a node's identity, so it keeps its id after the link restarts."""
        self._write(
            "INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?)",
            (node_id, token, public_key, json.dumps(node_config)),
        )

    def nodes(self) -> list[tuple[int, str, bytes | None, dict[str, UserConfigValue]]]:
        """Every node registered so far: id, token, public key, node config."""
        rows = self._read("SELECT node_id, token, public_key, node_config FROM nodes")
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def start_run(
        self, run_id: int, name: str, run_config: dict[str, UserConfigValue], out_dir: str | None
    ) -> None:
        """Record a new run as running."""
        self._write(
            "INSERT INTO runs VALUES (?, ?, ?, ?, 'running')",
            (run_id, name, json.dumps(run_config), out_dir),
        )

    def unfinished_run(self, name: str) -> RunRow | None:
        """The latest run called ``name`` that did not finish, if any."""
        rows = self._read(
            "SELECT run_id, name, run_config, out_dir FROM runs "
            "WHERE name = ? AND status = 'running' ORDER BY rowid DESC LIMIT 1",
            (name,),
        )
        if not rows:
            return None
        run_id, run_name, config, out_dir = rows[0]
        return RunRow(run_id, run_name, json.loads(config), out_dir)

    def finish_run(self, run_id: int, status: str) -> None:
        """Mark a run ``finished`` or ``failed``."""
        self._write("UPDATE runs SET status = ? WHERE run_id = ?", (status, run_id))

    def save_round(
        self, run_id: int, server_round: int, record: RoundRecord | None, arrays: ArrayRecord
    ) -> None:
        """A completed round: its record and the global model after it, committed together."""
        model = self.models_dir / str(run_id) / f"round-{server_round:04d}.npz"
        save_arrays(arrays, model)  # whole, then renamed: never half a file
        payload = None if record is None else json.dumps(record.to_json(), allow_nan=True)
        self._write(
            "INSERT OR REPLACE INTO rounds VALUES (?, ?, ?, ?)",
            (run_id, server_round, payload, model.name),
        )
        for old in model.parent.glob("round-*.npz"):  # the row points at the new model now
            if old != model:
                old.unlink(missing_ok=True)

    def save_round_record(self, run_id: int, record: RoundRecord) -> None:
        """Round 0's record, which comes after its model (the initial evaluation)."""
        self._write(
            "UPDATE rounds SET record = ? WHERE run_id = ? AND server_round = ?",
            (json.dumps(record.to_json(), allow_nan=True), run_id, record.server_round),
        )

    def resume_point(self, run_id: int) -> ResumePoint | None:
        """Where run ``run_id`` picks up again: None if it has no completed round yet."""
        rows = self._read(
            "SELECT server_round, record, model FROM rounds WHERE run_id = ? ORDER BY server_round",
            (run_id,),
        )
        if not rows:
            return None
        last_round, _, model = rows[-1]
        records = tuple(RoundRecord.from_json(json.loads(r[1])) for r in rows if r[1] is not None)
        arrays = load_arrays(self.models_dir / str(run_id) / model)
        return ResumePoint(arrays, records, last_round)

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute(sql, params)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()


class StoreRecorder(RunObserver):
    """A run observer that writes each completed round to the store as it ends."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        self._record: RoundRecord | None = None

    def on_round(self, record: RoundRecord) -> None:
        """Keep the round's record until its model comes (round 0's model came first)."""
        if record.server_round == 0:
            self.store.save_round_record(self.run_id, record)
        else:
            self._record = record

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """The round is complete: write its record and model together."""
        record = self._record if server_round > 0 else None
        self.store.save_round(self.run_id, server_round, record, arrays)
        self._record = None
