"""The link's database (SQLite): nodes, runs, and each completed round with its global model.

Submitted apps' bundles are files beside it too (``<db>.apps/<digest>.zip``).

A round's model is first written to a file beside the database (``<db>.models/``, written
whole, fsynced, then renamed, so any size fits), then the round's row, with its record and
the model's file name, is written in one transaction: a link killed at any moment has either
the whole round or none of it. Only the latest model of a run is kept on disk. A write that
fails (a full disk) raises StorageError and leaves what was committed as it was. On restart
the nodes keep their ids (and tokens), and an unfinished run resumes after its last
completed round. Messages in flight when the link died are not stored: their round runs
again, so nothing is counted twice. A run's starts that never ended are counted too
(``run_starts``): a run that takes the link down again and again is not resumed for ever.
"""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._durable import clean_temp_files, fault_point
from ..context import UserConfigValue
from ..errors import ConfigError, StorageError, WireError
from ..records import ArrayRecord
from ..server import ResumePoint, RoundRecord, RunObserver, load_arrays, save_arrays

__all__ = ["UNFINISHED", "AppRef", "RunRow", "Store", "StoreRecorder"]

log = logging.getLogger("pollinate.link")

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
CREATE TABLE IF NOT EXISTS run_starts (run_id INTEGER PRIMARY KEY, open INTEGER NOT NULL);
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

_SQLITE_FULL = 13
"""SQLite's result code for a full disk (or database)."""

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
    """The link's SQLite database; safe to use from the link's threads.

    Opening it removes the temp files a crashed write left beside it. A run's status that
    cannot be written (a full disk) is kept and written with the next status, or at close.
    """

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
        self._saving = threading.Lock()  # one writer of runs' rows: none overtakes another
        self._unsaved: dict[int, RunRow] = {}
        runs = self.models_dir.glob("*") if self.models_dir.is_dir() else ()
        clean_temp_files(self.apps_dir, *runs)

    def close(self) -> None:
        """Write the statuses still unsaved if it can (or say which are lost), and close."""
        with self._saving:
            try:
                self._save_unsaved()
            except StorageError as err:
                ids = ", ".join(map(str, self._unsaved))
                log.error(
                    "%s: the status of run(s) %s is not recorded; a restart resumes them", err, ids
                )
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
            f"nodes/{node_id}",
        )

    def forget_nodes(self, node_ids: list[int]) -> None:
        """Forget registrations that expired: those nodes get new ids if they come back."""
        self._write(
            "DELETE FROM nodes WHERE node_id IN (SELECT value FROM json_each(?))",
            (json.dumps(node_ids),),
            f"{len(node_ids)} expired registration(s)",
        )

    def nodes(self) -> list[tuple[int, str, bytes | None, dict[str, UserConfigValue]]]:
        """Every node registered so far: id, token, public key, node config."""
        rows = self._read("SELECT node_id, token, public_key, node_config FROM nodes")
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def save_run(self, run: RunRow) -> None:
        """Record a run, or its new status (StorageError if it cannot: it is kept, to retry).

        A status the database could not take earlier is written first, so a later success
        leaves every run's row up to date.
        """
        with self._saving:
            self._unsaved[run.run_id] = run
            self._save_unsaved()

    def _save_unsaved(self) -> None:
        """Write the rows not written yet, oldest first (call holding ``_saving``)."""
        for run_id, row in list(self._unsaved.items()):
            self._save_run(row)
            del self._unsaved[run_id]

    def _save_run(self, run: RunRow) -> None:
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
            f"runs/{run.run_id}/{run.status}",
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
        subject = f"rounds/{run_id}/round-{server_round:04d}"
        self._write(
            "INSERT OR REPLACE INTO rounds (run_id, server_round, record, model, state) "
            "VALUES (?, ?, ?, ?, ?)",
            (run_id, server_round, payload, model.name, state_file and state_file.name),
            subject,
        )
        fault_point("store.committed", subject)
        for old in folder.glob("round-*.npz"):  # the row points at the new files now
            if old not in (model, state_file):
                old.unlink(missing_ok=True)

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

    def start_attempt(self, run_id: int) -> None:
        """A run starts: one more start that has not ended (a crash never ends it)."""
        self._write(
            "INSERT INTO run_starts VALUES (?, 1) "
            "ON CONFLICT (run_id) DO UPDATE SET open = open + 1",
            (run_id,),
            f"the start of run {run_id}",
        )

    def end_attempts(self, run_id: int, still_open: int = 0) -> None:
        """The run's starts so far ended without a crash (1: all but the one going on)."""
        self._write(
            "INSERT OR REPLACE INTO run_starts VALUES (?, ?)",
            (run_id, still_open),
            f"the starts of run {run_id}",
        )

    def crashes(self, run_id: int) -> int:
        """How many starts of the run in a row never ended: the link went down each time."""
        rows = self._read("SELECT open FROM run_starts WHERE run_id = ?", (run_id,))
        return int(rows[0][0]) if rows else 0

    def _write(self, sql: str, params: tuple[Any, ...], subject: str) -> None:
        """One statement, committed; StorageError (naming the database) if it cannot be."""
        try:
            fault_point("store.write", subject)
            with self._lock:
                self._db.execute(sql, params)
        except sqlite3.Error as err:
            full = getattr(err, "sqlite_errorcode", None) == _SQLITE_FULL
            reason = OSError(errno.ENOSPC if full else errno.EIO, str(err))
            raise StorageError.writing(self.path, reason) from err
        except OSError as err:
            raise StorageError.writing(self.path, err) from err

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()


class StoreRecorder(RunObserver):
    """A run observer that commits each completed round to the store as it ends.

    Round 0 (the initial model) is committed with its centralized evaluation, or when round
    1 starts if there is none: a link killed during that evaluation starts the run afresh,
    so its line in ``metrics.jsonl`` is never lost. Install it after the observers that
    write the run's files, so a committed round's files are already on disk.
    """

    def __init__(self, store: Store, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        self._record: RoundRecord | None = None
        self._state: tuple[int, ArrayRecord] | None = None
        self._initial: ArrayRecord | None = None

    def on_round_start(self, server_round: int, num_rounds: int) -> None:
        """Round 0 had no centralized evaluation: it is complete now."""
        self._commit_initial()

    def on_round(self, record: RoundRecord) -> None:
        """Keep the round's record until its model comes; round 0's completes round 0."""
        self._record = record
        if record.server_round == 0:
            self._commit_initial()

    def on_strategy_state(self, server_round: int, state: ArrayRecord) -> None:
        """Keep the strategy's state until the round's model comes."""
        self._state = (server_round, state)

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """The round is complete: write its record, model and strategy state together."""
        if server_round == 0:
            self._initial = arrays  # its evaluation, if any, comes next
        else:
            self._commit_initial()  # if no round start was reported
            self._commit(server_round, arrays)

    def _commit_initial(self) -> None:
        if self._initial is not None:
            self._commit(0, self._initial)
            self._initial = None

    def _commit(self, server_round: int, arrays: ArrayRecord) -> None:
        """Save the round with the record and state that came for it (and forget them)."""
        record = (
            self._record if self._record and self._record.server_round == server_round else None
        )
        state = self._state[1] if self._state and self._state[0] == server_round else None
        self.store.save_round(self.run_id, server_round, record, arrays, state)
        if record is not None:
            self._record = None
        if state is not None:
            self._state = None
