"""A full disk at any write: the run fails once, everywhere, and the link goes on.

A fault point (``pollinate._durable``) raises the OSError a full disk raises (ENOSPC) at
one write of the first of two queued runs. The first run must be ``failed`` with that
error in memory, in ``ls`` and in the database, with one line in the link's log; the
second run must finish; nothing stored may be damaged; a restart must not resume it.
"""

import contextlib
import json
import logging

import pytest

from pollinate.deploy import serve_link
from pollinate.deploy._bundle import pack_app
from pollinate.deploy._store import AppRef, Store
from pollinate.errors import AppError, StorageError
from pollinate.server import ServerApp, load_arrays

from .crash_app import ROUNDS, server_app, start_nodes
from .submitted import write_app

POINTS = [
    ("write.written", "*/first/metrics.jsonl"),  # the run's fresh, empty metrics.jsonl
    ("write.start", "*/first/checkpoints/round-0000.npz"),
    ("append.written", "*/first/metrics.jsonl"),  # round 0's line, half written
    ("write.start", "*/first/checkpoints/round-0002.npz"),
    ("write.written", "*/first/checkpoints/round-0002.npz"),
    ("write.renamed", "*/first/checkpoints/round-0002.npz"),
    ("write.written", "*.models/{run}/round-0002.npz"),
    ("store.write", "rounds/{run}/round-0002"),
    ("write.written", "*/first/model.npz"),
]


@pytest.mark.parametrize(("point", "subject"), POINTS, ids=lambda p: str(p))
def test_a_full_disk_fails_the_run_once_everywhere_and_the_queue_goes_on(
    tmp_path, monkeypatch, caplog, point, subject
):
    db = tmp_path / "link.db"
    with _link(db) as (runs, port):
        first = runs.submit("first", {}, server_app=server_app(), out_dir=tmp_path / "first")
        second = runs.submit("second", {}, server_app=server_app(), out_dir=tmp_path / "second")
        _arm(monkeypatch, point, subject.format(run=first), "enospc")
        with caplog.at_level(logging.WARNING, logger="pollinate"):
            start_nodes(port)
            runs.start()
            with pytest.raises(StorageError, match="no space left on device writing "):
                runs.wait(first, 60)
            assert runs.wait(second, 60).arrays  # the queue went on
        listed = {row.run_id: row for row, _ in runs.rows()}  # what `pollinate ls` shows
    error = listed[first].error
    assert listed[first].status == "failed" and error.startswith("no space left on device")
    lines = _warnings(caplog)
    assert lines == [f"run {first} failed: {error}"]
    stored = {row.run_id: row for row in Store(db).runs()}
    assert (stored[first].status, stored[first].error) == ("failed", error)
    assert stored[second].status == "finished"
    _assert_undamaged(tmp_path / "first")
    with _link(db) as (runs, _):  # a restart: the failed run stays failed
        runs.start()
        assert runs.row(first).status == "failed" and runs.row(second).status == "finished"


def test_a_status_the_database_cannot_take_is_kept_and_written_later(tmp_path, monkeypatch, caplog):
    db = tmp_path / "link.db"
    broken = ServerApp()

    @broken.main()
    def main(grid, context):
        raise AppError("the app gave up")

    with _link(db) as (runs, port):
        first = runs.submit("first", {}, server_app=broken, out_dir=tmp_path / "first")
        _arm(monkeypatch, "store.write", f"runs/{first}/failed", "enospc")
        with caplog.at_level(logging.WARNING, logger="pollinate"):
            start_nodes(port)
            runs.start()
            with pytest.raises(AppError):
                runs.wait(first, 60)
        assert runs.row(first).status == "failed"  # memory, and ls, say what happened
        (line,) = _warnings(caplog)
        assert line.startswith(f"run {first} failed: the app gave up; the database did not ")
        assert "no space left on device writing" in line
        assert Store(db).runs()[0].status == "running"  # not yet: the disk was full
        second = runs.submit("second", {}, server_app=server_app(), out_dir=tmp_path / "second")
        runs.wait(second, 60)
        assert Store(db).runs()[0].status == "failed"  # written with the next status


def test_a_running_status_the_database_cannot_take_does_not_stop_the_run(tmp_path, monkeypatch):
    db = tmp_path / "link.db"
    with _link(db) as (runs, port):
        run = runs.submit("first", {}, server_app=server_app(), out_dir=tmp_path / "first")
        _arm(monkeypatch, "store.write", f"runs/{run}/running", "enospc")
        start_nodes(port)
        runs.start()
        runs.wait(run, 60)
    assert Store(db).runs()[0].status == "finished"


def test_a_bundle_that_cannot_be_kept_is_refused_with_the_reason(tmp_path, monkeypatch):
    bundle = pack_app(write_app(tmp_path / "app"))
    app = AppRef(bundle.digest, "tinyapp.apps:server", "tinyapp.apps:client")
    with _link(tmp_path / "link.db") as (runs, _):
        _arm(monkeypatch, "write.written", "*.apps/*.zip", "enospc")
        with pytest.raises(StorageError, match=r"no space left on device writing .*\.zip"):
            runs.submit("tinyapp", {}, bundle=bundle, app=app)
        assert runs.rows() == []  # nothing queued
    assert list((tmp_path / "link.db.apps").iterdir()) == []  # no half bundle


@contextlib.contextmanager
def _link(db):
    """A plain-text link on a free port with database ``db``: yields its Runs and port."""
    ports = []
    with serve_link("127.0.0.1:0", insecure=True, db=db, on_listening=ports.append) as runs:
        yield runs, ports[0]


def _warnings(caplog):
    """Warnings logged, less the ones a plain-text link without node identity always gives."""
    exposed = ("plain text (--insecure)", "no node identity")
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and not r.getMessage().startswith(exposed)
    ]


def _arm(monkeypatch, point, subject, fault):
    monkeypatch.setenv("POLLINATE_FAULT_AT", point)
    monkeypatch.setenv("POLLINATE_FAULT_ON", subject)
    monkeypatch.setenv("POLLINATE_FAULT", fault)


def _assert_undamaged(out):
    """Every line a whole JSON round, in order; every file a loadable model; no temp file."""
    metrics = out / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.exists() else []
    rounds = [json.loads(line)["round"] for line in lines]
    assert rounds == list(range(len(rounds))) and len(rounds) <= ROUNDS + 1
    for path in out.rglob("*.npz"):
        assert load_arrays(path)
    assert [p for p in out.rglob("*") if p.suffix == ".tmp"] == []


def test_a_registration_the_database_cannot_take_admits_the_node_and_says_so(
    tmp_path, monkeypatch, caplog
):
    with _link(tmp_path / "link.db") as (runs, port):
        run = runs.submit("reg", {}, server_app=server_app(), out_dir=tmp_path / "reg")
        _arm(monkeypatch, "store.write", "nodes/*", "enospc")
        with caplog.at_level(logging.WARNING, logger="pollinate"):
            start_nodes(port)
            runs.start()
            assert runs.wait(run, 60).arrays  # both nodes served the run
    lines = [r.getMessage() for r in caplog.records if "not stored" in r.getMessage()]
    assert len(lines) == 1 and "is admitted but not stored: no space left on device" in lines[0]


def test_a_crash_count_the_database_cannot_take_leaves_the_run_as_it_ended(
    tmp_path, monkeypatch, caplog
):
    with _link(tmp_path / "link.db") as (runs, port):
        run = runs.submit("count", {}, server_app=server_app(), out_dir=tmp_path / "count")
        _arm(monkeypatch, "store.write", "the starts of run *", "enospc")
        # Each round's progress is counted; the end is not.
        monkeypatch.setenv("POLLINATE_FAULT_AFTER", str(ROUNDS))
        with caplog.at_level(logging.WARNING, logger="pollinate"):
            start_nodes(port)
            runs.start()
            assert runs.wait(run, 60).arrays
        assert runs.row(run).status == "finished"
    lines, _ = runs.log_of(run).read(0)
    ends = [line for line in lines if "finished after" in line]
    assert len(ends) == 1
    warnings = _warnings(caplog)
    assert any("its end is not counted: no space left" in m for m in warnings), warnings
