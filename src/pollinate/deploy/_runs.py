"""The link's runs: submitted apps wait in a queue and run one at a time, each with its log.

A run is either submitted with its app's bundle (``pollinate run --federation NAME``, or
``pollinate link APP_DIR``), so the nodes load its code from the bundle and the link runs
its ServerApp in a process of its own (``_serverproc``), or handed over in process
(``start_server``, ``pollinate link APP_DIR``), with its ServerApp object, run in the link's
process. With a store every run, its status and each completed round survive a restart: a
restarted link resumes a submitted run after its last completed round, unless the run was
going on when the link went down ``max_crashes`` times in a row.
"""

from __future__ import annotations

import collections
import logging
import math
import re
import secrets
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .._durable import write_file
from ..context import Context, UserConfigValue
from ..errors import (
    AppError,
    ConfigError,
    NotFound,
    PollinateError,
    RunStopped,
    StorageError,
    WaitTimeout,
)
from ..message import SERVER_NODE_ID
from ..records import ArrayRecord, RecordDict
from ..server import Result, RunObserver, ServerApp, run_server_app
from ._bundle import AppBundle, unpack_app
from ._grid import LinkGrid
from ._link import Link
from ._runfile import write_run_file
from ._runlog import LOG_FILE, RoundLines, RunLog, RunLogHandler
from ._serverproc import STOP_GRACE_S, ServerProcess
from ._store import AppRef, RunRow, Store, StoreRecorder

__all__ = ["Runs"]

log = logging.getLogger("pollinate.link")

_ENDED = ("finished", "failed", "stopped")
MAX_NAME_LENGTH = 100
RECENT_BUNDLES = 2
"""Bundles kept in memory for the nodes that fetch them (the current run's, the next's)."""
MAX_WAIT_S = 7 * 24 * 3600.0
MAX_CRASHES = 3
MAX_IDLE_S = 3600.0
_STOPPED = "stopped by an operator (pollinate stop, or Stop on a dashboard)"
_UNSAVED = (
    "the database did not record it ({}): the link writes it with the next status, and a "
    "restart before then finds the run unfinished"
)


@dataclass(eq=False)
class _Run:
    """A run in the link's memory: its row, its log, and what its waiters need."""

    row: RunRow
    log: RunLog
    rounds_done: int = 0
    server_app: ServerApp | None = None
    observers: Sequence[RunObserver] = ()
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None
    error: BaseException | None = None
    grid: LinkGrid | None = None
    stop_requested: bool = False

    def round_done(self, server_round: int) -> None:
        """A round completed (``pollinate ls`` counts them as they go)."""
        self.rounds_done = server_round


class Runs:
    """The runs of one link: submit, list, follow, stop; a worker thread runs them in turn.

    ``runs_dir`` holds each run's folder (``<app name>/<run id>``: metrics, checkpoints and
    ``log.txt``) unless the run names its own (None: runs that name none keep no files).
    Call ``start`` once submissions that resume earlier runs have attached their observers,
    and ``close`` to stop (an unfinished run stays unfinished in the store, to resume).
    A submitted run's ServerApp that sends the link nothing for ``max_idle_s`` is taken as
    hung and its run fails; a run that was going on each of the last ``max_crashes`` times
    the link went down fails instead of resuming again.
    """

    def __init__(
        self,
        link: Link,
        runs_dir: Path | None,
        store: Store | None = None,
        *,
        max_crashes: int = MAX_CRASHES,
        max_idle_s: float = MAX_IDLE_S,
    ) -> None:
        if max_crashes < 1:
            raise ConfigError(f"max_crashes must be at least 1, got {max_crashes}")
        if not (math.isfinite(max_idle_s) and max_idle_s > 0):
            raise ConfigError(f"max_idle_s must be a number of seconds above 0, got {max_idle_s}")
        self._max_crashes = max_crashes
        self._max_idle_s = max_idle_s
        self._link = link
        self._store = store
        self._runs_dir = runs_dir
        self._temp_apps = None if store is not None else tempfile.mkdtemp(prefix="pollinate-")
        self._apps_dir = store.apps_dir if store is not None else Path(self._temp_apps or "")
        self._lock = threading.Lock()
        self._runs: dict[int, _Run] = {}
        self._recent_bundles: dict[str, bytes] = {}
        self._queue: collections.deque[int] = collections.deque()
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._current: _Run | None = None
        self._worker = threading.Thread(target=self._work, name="link-runs", daemon=True)
        for row in store.runs() if store is not None else []:
            self._restore(row)
        link.bundles = self.bundle

    def _restore(self, row: RunRow) -> None:
        """An earlier link's run: a submitted one that did not end goes back in the queue."""
        run_log = RunLog(Path(row.out_dir) / LOG_FILE if row.out_dir else None)
        assert self._store is not None
        point = self._store.resume_point(row.run_id) if row.unfinished else None
        run = _Run(row, run_log, rounds_done=point.last_round if point else 0)
        crashes = self._store.crashes(row.run_id) if row.unfinished else 0
        if not row.unfinished:
            run_log.close()
            run.done.set()
        elif crashes >= self._max_crashes:
            why = (
                f"crashed {crashes} times in a row (the link went down while it ran, with no "
                "round completed in between): it is not resumed again"
            )
            self._end(run, "failed", f"failed: {why}", error=AppError(why))
        elif row.app is None:  # its ServerApp lived in a process that is gone
            self._set(run, status="interrupted")
            run_log.close()  # followers stop; a resubmission by its script reopens it
        else:
            self._set(run, status="queued")
            done = run.rounds_done
            run_log.write(
                f"the link restarted: the run resumes after round {done}"
                if done
                else "the link restarted: the run is queued again"
            )
            self._queue.append(row.run_id)
        self._runs[row.run_id] = run

    def start(self) -> None:
        """Start running queued runs."""
        self._worker.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the worker; a run that is going on stays unfinished (it resumes on restart)."""
        with self._lock:
            self._closing = True
            current = self._current
            self._wake.notify_all()
        if current is not None and current.grid is not None:
            current.grid.stop("the link is shutting down")
        if self._worker.is_alive():
            self._worker.join(timeout_s)
        if self._temp_apps is not None:
            shutil.rmtree(self._temp_apps, ignore_errors=True)

    # Submitting -------------------------------------------------------------------------

    def submit(
        self,
        name: str,
        run_config: dict[str, UserConfigValue],
        *,
        bundle: AppBundle | None = None,
        app: AppRef | None = None,
        server_app: ServerApp | None = None,
        min_nodes: int = 1,
        wait_s: float = 300.0,
        out_dir: Path | None = None,
        observers: Sequence[RunObserver] = (),
        resume: bool = False,
    ) -> int:
        """Queue a run and return its id: a bundle with its ``app`` reference, a ServerApp, or both.

        With a bundle the nodes may load the run's ClientApp from it, and so may the link its
        ServerApp unless ``server_app`` is given (``pollinate link APP_DIR`` gives it, loaded
        from the app's own folder, data files and all). With ``resume`` an unfinished run of
        the same name (in the store) carries on instead of a new one starting, if its run
        config and code are the same.
        """
        if (bundle is None) != (app is None) or (bundle is None and server_app is None):
            raise ConfigError("a run needs an app bundle and its reference, or a ServerApp")
        if bundle is not None:
            self._keep_bundle(bundle)
        _check_request(name, run_config, min_nodes, wait_s)
        with self._lock:
            earlier = self._unfinished(name) if resume else None
            if earlier is not None:
                _check_same(earlier.row, run_config, app, self._store)
                self._take_back(earlier, server_app, observers)
                return earlier.row.run_id
            run_id = _new_run_id(self._runs)
            folder = out_dir
            if folder is None and self._runs_dir is not None:
                folder = self._runs_dir / _safe(name) / str(run_id)
            if folder is not None and (folder / "metrics.jsonl").exists():
                raise ConfigError(f"{str(folder)!r} already holds a run's results")
            row = RunRow(
                run_id,
                name,
                dict(run_config),
                None if folder is None else str(folder.resolve()),
                app=app,
                min_nodes=min_nodes,
                wait_s=wait_s,
                submitted_at=time.time(),
            )
            run_log = RunLog(None if folder is None else folder / LOG_FILE)
            run = _Run(row, run_log, server_app=server_app, observers=observers)
            self._runs[run_id] = run
            self._warn_unsaved(run, self._set(run, status="queued"))
            ahead = len(self._queue) + (self._current is not None)
            self._queue.append(run_id)
            self._wake.notify_all()
        waiting = f", behind {ahead} other run(s)" if ahead else ""
        config = " ".join(f"{k}={v}" for k, v in run_config.items())
        run.log.write(f"run {run_id} of {name} queued{waiting}; run config: {config}")
        return run_id

    def _take_back(
        self, run: _Run, server_app: ServerApp | None, observers: Sequence[RunObserver]
    ) -> None:
        """Give a resubmitted unfinished run its ServerApp and observers (call under the lock).

        An interrupted one also goes back to the head of the queue.
        """
        run.server_app, run.observers = server_app, observers
        run.stop_requested = False
        if run.row.status == "interrupted":
            self._set(run, status="queued")
            self._queue.appendleft(run.row.run_id)
            run.log.reopen()
        self._wake.notify_all()

    def _keep_bundle(self, bundle: AppBundle) -> None:
        """Write the bundle whole (then renamed, so no reader sees half of it), once.

        Two writers of one digest write the same bytes; a full disk raises StorageError.
        """
        path = self._apps_dir / f"{bundle.digest}.zip"
        if not path.is_file():
            write_file(path, lambda f: f.write(bundle.data))

    def bundle(self, digest: str) -> bytes | None:
        """A submitted app's bundle, by digest (nodes fetch it), or None if unknown."""
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            return None
        with self._lock:
            data = self._recent_bundles.get(digest)
        if data is not None:
            return data
        path = self._apps_dir / f"{digest}.zip"
        if not path.is_file():
            return None
        data = path.read_bytes()
        with self._lock:  # every node fetches it at a run's start: one copy in memory, not one each
            self._recent_bundles[digest] = data
            while len(self._recent_bundles) > RECENT_BUNDLES:
                self._recent_bundles.pop(next(iter(self._recent_bundles)))
        return data

    def _unfinished(self, name: str) -> _Run | None:
        found = [r for r in self._runs.values() if r.row.name == name and r.row.unfinished]
        return max(found, key=lambda r: r.row.submitted_at) if found else None

    # Asking about runs ------------------------------------------------------------------

    @property
    def link(self) -> Link:
        """The link the runs run on (its nodes: ``link.node_status()``)."""
        return self._link

    def rows(self) -> list[tuple[RunRow, int]]:
        """Every run the link knows, oldest first, with its completed rounds."""
        with self._lock:
            runs = sorted(self._runs.values(), key=lambda r: r.row.submitted_at)
            return [(r.row, r.rounds_done) for r in runs]

    def find(self, ref: str) -> int:
        """The run whose id is ``ref``, or starts with it; ConfigError if none or several."""
        ref = ref.strip()
        if not re.fullmatch(r"[0-9]{1,19}", ref):
            raise NotFound(f"no run {ref!r} on this link: run ids are digits (pollinate ls)")
        with self._lock:
            if int(ref) in self._runs:
                return int(ref)
            matches = [run_id for run_id in self._runs if str(run_id).startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NotFound(f"no run {ref!r} on this link (pollinate ls lists them)")
        raise ConfigError(f"{len(matches)} runs start with {ref!r}: give more digits")

    def rounds_done(self, run_id: int) -> int:
        """How many rounds the run has completed."""
        with self._lock:
            return self._runs[run_id].rounds_done

    def log_of(self, run_id: int) -> RunLog:
        """The run's log."""
        with self._lock:
            return self._runs[run_id].log

    def row(self, run_id: int) -> RunRow:
        """The run's row as it is now."""
        with self._lock:
            return self._runs[run_id].row

    def wait(self, run_id: int, timeout_s: float | None = None) -> Result:
        """Wait for a run to end; its Result, or what it raised (RunStopped if stopped)."""
        run = self._runs[run_id]
        if not run.done.wait(timeout_s):
            raise WaitTimeout(f"run {run_id} is still going after {timeout_s} s")
        if run.error is not None:
            raise run.error
        if run.result is None:
            raise RunStopped(f"run {run_id} ended as {run.row.status}: {run.row.error or ''}")
        return run.result

    def stop(self, run_id: int) -> RunRow:
        """Stop a run: a queued one never starts, a running one stops at its next message."""
        with self._lock:
            run = self._runs[run_id]
            if run.row.status in _ENDED:
                return run.row
            if run.row.status in ("queued", "interrupted") and run is not self._current:
                if run_id in self._queue:
                    self._queue.remove(run_id)
                self._end(run, "stopped", "stopped before it started")
                return run.row
            run.stop_requested = True
            grid = run.grid
        if grid is not None:
            grid.stop(_STOPPED)
        own = run.server_app is None  # a submitted ServerApp, in its own process
        grace = f" (or its ServerApp's process ends in {STOP_GRACE_S:g} s)" if own else ""
        run.log.write(f"stopping: the run ends at its next message{grace}")
        return run.row

    # Running ----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
                run = self._runs[self._queue.popleft()]
                self._current = run
                started = run.row.started_at or time.time()
                self._warn_unsaved(run, self._set(run, status="running", started_at=started))
            try:
                self._execute(run)
            except Exception as err:  # a bug or a full disk must not end the queue
                log.exception("run %d could not be run", run.row.run_id)
                self._end(run, "failed", f"failed: {type(err).__name__}: {err}", error=err)
            finally:
                with self._lock:
                    self._current = None

    def _execute(self, run: _Run) -> None:
        row = run.row
        handler = RunLogHandler(run.log, threading.get_ident())
        logging.getLogger("pollinate").addHandler(handler)
        process = None
        if run.server_app is None:  # submitted code runs in a process of its own
            process = ServerProcess(self._max_idle_s, lambda: run.stop_requested or self._closing)
        try:
            self._count_start(row.run_id, started=True)
            if process is not None:
                self._load(row, process)
            grid = self._link.grid(row.run_id, row.run_config, row.app, row.name)
            with self._lock:  # a stop that came before the grid existed takes effect now
                run.grid = grid
                if self._closing:
                    grid.stop("the link is shutting down")
                elif run.stop_requested:
                    grid.stop(_STOPPED)
            run.log.write(f"waiting for {row.min_nodes} node(s)")
            grid.wait_for_nodes(row.min_nodes, row.wait_s)
            resume = self._store.resume_point(row.run_id) if self._store else None
            watchers = [*run.observers, RoundLines(run.log, run.round_done)]
            if self._store is not None:
                watchers += [StoreRecorder(self._store, row.run_id), _Progress(self._store, row)]
            if resume is None:
                run.log.write(f"started on {len(grid.node_ids())} node(s)")
            else:
                log.warning(
                    "resuming run %d after round %d; results go to %s",
                    row.run_id,
                    resume.last_round,
                    row.out_dir,
                )
            if process is not None:
                run.result = process.run(grid, watchers, resume)
            else:
                assert run.server_app is not None
                context = Context(
                    row.run_id, SERVER_NODE_ID, {}, dict(row.run_config), RecordDict()
                )
                run.result = run_server_app(
                    run.server_app,
                    grid,
                    context,
                    out_dir=row.out_dir,
                    observers=watchers,
                    resume=resume,
                )
            self._end(run, "finished", f"finished after {run.rounds_done} round(s)")
        except RunStopped as err:
            if self._closing and not run.stop_requested:  # the run resumes with the link
                run.log.write("the link is shutting down; the run stays unfinished")
                run.error = err
                run.done.set()
            else:
                self._end(run, "stopped", _STOPPED, error=err)
        except PollinateError as err:
            self._end(run, "failed", f"failed: {err}", error=err)
        except SystemExit as err:  # a ServerApp handed over in process called sys.exit()
            why = AppError(f"the ServerApp called sys.exit({err.code!r})")
            self._end(run, "failed", f"failed: {why}", error=why)
        except Exception as err:
            run.log.write("".join(traceback.format_exception(err)).rstrip())
            self._end(run, "failed", f"failed: {type(err).__name__}: {err}", error=err)
        finally:
            logging.getLogger("pollinate").removeHandler(handler)
            if run.grid is not None:  # replies still on their way are dropped, never awaited
                run.grid.stop("the run ended")
            self._link.release(run.grid)
            run.grid = None
            if process is not None:
                process.close()
            self._count_start(row.run_id, started=False)

    def _count_start(self, run_id: int, *, started: bool) -> None:
        """Count a start of the run, or its end, toward the crash limit."""
        if self._store is not None:
            store = self._store
            if started:
                _count(run_id, "start", lambda: store.start_attempt(run_id))
            else:
                _count(run_id, "end", lambda: store.end_attempts(run_id))

    def _load(self, row: RunRow, process: ServerProcess) -> None:
        """Start the run's ServerApp process: it loads the app from the unpacked bundle."""
        assert row.app is not None
        data = self.bundle(row.app.digest)
        if data is None:
            raise ConfigError(f"the app bundle {row.app.digest[:12]} of run {row.run_id} is gone")
        folder = unpack_app(AppBundle(data, row.app.digest), self._apps_dir / "code")
        process.load(row.app.serverapp, str(folder), row.run_id, row.run_config, row.out_dir)

    def _end(
        self, run: _Run, status: str, message: str, error: BaseException | None = None
    ) -> None:
        """End the run: its status everywhere, one line in its log and one in the link's."""
        unsaved = self._set(
            run, status=status, ended_at=time.time(), error=None if error is None else str(error)
        )
        if unsaved is not None:
            message += f"; {_UNSAVED.format(unsaved)}"
        run.error = error
        run.log.write(message)
        run.log.close()
        level = logging.WARNING if status == "failed" else logging.INFO
        log.log(level, "run %d %s", run.row.run_id, message)
        run.done.set()  # after the line: whoever waits for the run finds it logged

    def _set(self, run: _Run, **changes: object) -> StorageError | None:
        """Change the run's row: in memory always (it is what happened), and in the store.

        A row the store cannot take (a full disk) stays there to be written with the next
        status, or at close; the error comes back for the caller to report.
        """
        run.row = replace(run.row, **changes)  # type: ignore[arg-type]
        if "status" in changes:
            write_run_file(run.row, run.rounds_done, run.result)
        if self._store is None:
            return None
        try:
            self._store.save_run(run.row)
        except StorageError as err:
            return err
        return None

    def _warn_unsaved(self, run: _Run, unsaved: StorageError | None) -> None:
        if unsaved is not None:
            log.warning(
                "run %d is %s; %s", run.row.run_id, run.row.status, _UNSAVED.format(unsaved)
            )


class _Progress(RunObserver):
    """Counts a completed round as progress: the starts before it need not count as crashes."""

    def __init__(self, store: Store, row: RunRow) -> None:
        self.store = store
        self.run_id = row.run_id

    def on_arrays(self, server_round: int, arrays: ArrayRecord) -> None:
        """A round is stored: only the start going on may still crash."""
        if server_round > 0:
            store = self.store
            _count(self.run_id, "progress", lambda: store.end_attempts(self.run_id, still_open=1))


def _count(run_id: int, what: str, write: Callable[[], None]) -> None:
    """Write a crash-limit count; one the database cannot take is logged and let go.

    The run is not failed for it: at worst a restart counts one crash too many or too few.
    """
    try:
        write()
    except StorageError as err:
        log.warning("run %d: its %s is not counted: %s", run_id, what, err)


def _check_same(
    row: RunRow, run_config: dict[str, UserConfigValue], app: AppRef | None, store: Store | None
) -> None:
    """Refuse to resume a run with another run config or other code: that mixes experiments."""
    where = f"{store.path} holds" if store is not None else "this link has"
    if row.run_config != run_config:
        changed = sorted(
            k for k in {*run_config, *row.run_config} if run_config.get(k) != row.run_config.get(k)
        )
        raise ConfigError(
            f"{where} an unfinished run {row.name!r} with another run config "
            f"({', '.join(changed)} differ): give the same run config to resume it, or "
            "another database to start afresh"
        )
    if row.app is not None and app is not None and row.app.digest != app.digest:
        raise ConfigError(
            f"{where} an unfinished run {row.name!r} of other code (app {row.app.digest[:12]}, "
            f"now {app.digest[:12]}): restore the code to resume it, or use another database "
            "to start afresh"
        )


def _new_run_id(runs: dict[int, _Run]) -> int:
    while (run_id := secrets.randbits(63)) in runs or run_id == 0:
        pass
    return run_id


def _check_request(
    name: str, run_config: dict[str, UserConfigValue], min_nodes: int, wait_s: float
) -> None:
    """What a submission asks for, checked before anything is queued (it may be hostile)."""
    if not 0 < len(name) <= MAX_NAME_LENGTH:
        raise ConfigError(f"a run's name must have 1 to {MAX_NAME_LENGTH} characters")
    if not all(
        isinstance(k, str) and isinstance(v, (bool, int, float, str)) for k, v in run_config.items()
    ):
        raise ConfigError("a run config maps names to bool, int, float or str values")
    if not 1 <= min_nodes <= 1_000_000:
        raise ConfigError(f"min_nodes must be between 1 and 1,000,000, got {min_nodes}")
    if not (math.isfinite(wait_s) and 0 < wait_s <= MAX_WAIT_S):
        raise ConfigError(f"wait_s must be above 0 and at most {MAX_WAIT_S:g} s, got {wait_s}")


def _safe(name: str) -> str:
    """``name`` as a folder name: letters, digits, ``-``, ``_`` and ``.`` only."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip(".")
    return cleaned or "app"
