"""The link's database (SQLite): nodes, runs, and each completed round with its global model.

Submitted apps' bundles are files beside it too (``<db>.apps/<digest>.zip``).

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
from ..errors import ConfigError, WireError
from ..records import ArrayRecord
from ..server import ResumePoint, RoundRecord, RunObserver, load_arrays, save_arrays

__all__ = ["UNFINISHED", "AppRef", "RunRow", "Store", "StoreRecorder"]

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

_RUN_COLUMNS = {
    "app": "TEXT",
    "min_nodes": "INTEGER NOT NULL DEFAULT 1",
    "wait_s": "REAL NOT NULL DEFAULT 300",
    "submitted_at": "REAL NOT NULL DEFAULT 0",
    "started_at": "REAL",
    "ended_at": "REAL",
    "error": "TEXT",
}
"""Columns of ``runs`` added since its first version: an older database gains them."""

_ROUND_COLUMNS = {"state": "TEXT"}
"""Columns of ``rounds`` added since its first version: the strategy's state file."""

UNFINISHED = ("queued", "running", "interrupted")
"""Statuses of a run that may still run: a restarted link picks these up."""


@dataclass(frozen=True, slots=True)
class AppRef:
    """Where a submitted run's code is: its bundle's digest and the components in it."""

    digest: str
    serverapp: str
    clientapp: str

    def to_json(self) -> dict[str, str]:
        """The reference as JSON (in the database, and in each message's header)."""
        return {"digest": self.digest, "serverapp": self.serverapp, "clientapp": self.clientapp}

    @classmethod
    def from_json(cls, payload: Any) -> AppRef:
        """The reference ``to_json`` wrote; WireError if it is malformed."""
        if not isinstance(payload, dict) or not all(
            isinstance(payload.get(k), str) for k in ("digest", "serverapp", "clientapp")
        ):
            raise WireError("an app reference needs digest, serverapp and clientapp strings")
        return cls(payload["digest"], payload["serverapp"], payload["clientapp"])


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run the link knows: what it runs, how it goes, and where its results are.

    ``app`` is None for a run whose ServerApp the link was handed in process
    (``start_server``); its nodes bring their own ClientApp.
    """

    run_id: int
    name: str
    run_config: dict[str, UserConfigValue]
    out_dir: str | None
    status: str = "queued"
    app: AppRef | None = None
    min_nodes: int = 1
    wait_s: float = 300.0
    submitted_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None

    @property
    def unfinished(self) -> bool:
        """Whether the run may still run (queued, running, or cut short by a restart)."""
        return self.status in UNFINISHED


class Store:
    """The link's SQLite database; safe to use from the link's threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.models_dir = self.path.with_name(self.path.name + ".models")
        self.apps_dir = self.path.with_name(self.path.name + ".apps")
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            for table, columns in (("runs", _RUN_COLUMNS), ("rounds", _ROUND_COLUMNS)):
                have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                for column, kind in columns.items():
                    if column not in have:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
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

    def forget_nodes(self, node_ids: list[int]) -> None:
        """Forget registrations that expired: those nodes get new ids if they come back."""
        self._write(
            "DELETE FROM nodes WHERE node_id IN (SELECT value FROM json_each(?))",
            (json.dumps(node_ids),),
        )

    def nodes(self) -> list[tuple[int, str, bytes | None, dict[str, UserConfigValue]]]:
        """Every node registered so far: id, token, public key, node config."""
        rows = self._read("SELECT node_id, token, public_key, node_config FROM nodes")
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def save_run(self, run: RunRow) -> None:
        """Record a run, or its new status."""
        self._write(
            "INSERT OR REPLACE INTO runs (run_id, name, run_config, out_dir, status, app, "
            "min_nodes, wait_s, submitted_at, started_at, ended_at, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run.run_id,
                run.name,
                json.dumps(run.run_config),
                run.out_dir,
                run.status,
                None if run.app is None else json.dumps(run.app.to_json()),
                run.min_nodes,
                run.wait_s,
                run.submitted_at,
                run.started_at,
                run.ended_at,
                run.error,
            ),
        )

    def runs(self) -> list[RunRow]:
        """Every run, oldest first."""
        rows = self._read(
            "SELECT run_id, name, run_config, out_dir, status, app, min_nodes, wait_s, "
            "submitted_at, started_at, ended_at, error FROM runs ORDER BY submitted_at, run_id"
        )
        return [
            RunRow(
                r[0],
                r[1],
                json.loads(r[2]),
                r[3],
                r[4],
                None if r[5] is None else AppRef.from_json(json.loads(r[5])),
                *r[6:],
            )
            for r in rows
        ]

    def save_round(
        self,
        run_id: int,
        server_round: int,
        record: RoundRecord | None,
        arrays: ArrayRecord,
        state: ArrayRecord | None = None,
    ) -> None:
        """A completed round: its record, model and strategy state, committed together.

        ``state`` is what a stateful strategy keeps between rounds (server moments, control
        variates), so a resumed run goes on exactly as the uninterrupted one would.
        """
        folder = self.models_dir / str(run_id)
        model = folder / f"round-{server_round:04d}.npz"
        save_arrays(arrays, model)  # whole, then renamed: never half a file
        state_file = None
        if state is not None:
            state_file = folder / f"round-{server_round:04d}.state.npz"
            save_arrays(state, state_file)
        payload = None if record is None else json.dumps(record.to_json(), allow_nan=True)
        self._write(
            "INSERT OR REPLACE INTO rounds (run_id, server_round, record, model, state) "
            "VALUES (?, ?, ?, ?, ?)",
            (run_id, server_round, payload, model.name, state_file and state_file.name),
        )
        for old in folder.glob("round-*.npz"):  # the row points at the new files now
            if old not in (model, state_file):
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
            "SELECT server_round, record, model, state FROM rounds WHERE run_id = ? "
            "ORDER BY server_round",
            (run_id,),
        )
        if not rows:
            return None
        last_round, _, model, state = rows[-1]
        records = tuple(RoundRecord.from_json(json.loads(r[1])) for r in rows if r[1] is not None)
        folder = self.models_dir / str(run_id)
        arrays = load_arrays(folder / model)
        strategy_state = load_arrays(folder / state) if state else None
        return ResumePoint(arrays, records, last_round, strategy_state)

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
        self._state: ArrayRecord | None = None

    def on_round(self, record: RoundRecord) -> None:
        """Keep the round's record until its model comes (round 0's model came first)."""
        if record.server_round == 0:
            self.store.save_round_record(self.run_id, record)
        else:
            self._record = record

    def on_strategy_state(self, server_round: int, state: ArrayRecord) -> None:
        """Keep the strategy's state until the round's model comes."""
        self._state = state

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """The round is complete: write its record, model and strategy state together."""
        record = self._record if server_round > 0 else None
        self.store.save_round(self.run_id, server_round, record, arrays, self._state)
        self._record, self._state = None, None
