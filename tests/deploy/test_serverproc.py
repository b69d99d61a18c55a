"""A submitted ServerApp runs in its own process: whatever it does, the link and its queue go on."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from pollinate.deploy import LinkGrid, serve_link
from pollinate.deploy import _pipe as pipe
from pollinate.deploy import _serverproc as serverproc
from pollinate.deploy._bundle import pack_app
from pollinate.deploy._control import ControlClient, Submission
from pollinate.deploy._store import AppRef, RunRow, Store
from pollinate.errors import AppError, ConfigError
from pollinate.loader import load_object
from pollinate.message import Message
from pollinate.records import ArrayRecord, ConfigRecord, RecordDict
from pollinate.server import RunObserver, ServerApp, load_arrays

from .processes import free_port
from .submitted import start_bare_nodes, write_app

HOSTILE = '''

import logging
import os
import signal
import sys
import threading
import time

hostile = ServerApp()


@hostile.main()
def hostile_main(grid, context):
    """One round of FedAvg, then what the run config's ``how`` says."""
    strategy = FedAvg(min_available_nodes=2, min_train_nodes=2)
    strategy.start(grid, ArrayRecord({"w": np.zeros(3)}), num_rounds=1)
    how = context.run_config["how"]
    logging.getLogger("pollinate.server").warning("about to %s", how)
    if how == "exit":
        os._exit(7)
    if how == "sys-exit":
        sys.exit()
    if how == "raise":
        raise ValueError("boom")
    if how == "kill-self":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "kill-link":
        os.kill(os.getppid(), signal.SIGKILL)
    if how == "fork-and-exit":  # the forked process keeps the pipe open: no EOF comes
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        os._exit(5)
    if how == "receive-bogus":
        list(grid.receive(["bogus-id"], None))
    if how == "wait-for-a-million":
        grid.wait_for_nodes(10**6, 1e9)
    if how == "die-while-the-link-waits":  # the link is blocked in the call below
        threading.Timer(0.5, os._exit, (3,)).start()
        grid.wait_for_nodes(100, timeout_s=3600)
    while True:  # "hang", and what is left of "kill-link"
        pass
'''

CONFIG = {"num-server-rounds": 2, "sleep-s": 0.0, "step": 1.0}


def _app(folder):
    app_dir = write_app(folder)
    apps = app_dir / "tinyapp" / "apps.py"
    apps.write_text(apps.read_text() + HOSTILE)
    return app_dir


def _bundle_args(app_dir, component="server"):
    bundle = pack_app(app_dir)
    app = AppRef(bundle.digest, f"tinyapp.apps:{component}", "tinyapp.apps:client")
    return {"bundle": bundle, "app": app, "min_nodes": 2, "wait_s": 30.0}


@pytest.fixture
def runs_with_nodes(tmp_path):
    """A link's Runs with two bare nodes; ``open(max_idle_s)`` starts it (once)."""
    opened = []

    def open_link(**options):
        ports = []
        link = serve_link(
            "127.0.0.1:0",
            insecure=True,
            runs_dir=tmp_path / "runs",
            on_listening=ports.append,
            **options,
        )
        runs = link.__enter__()
        opened.append(link)
        runs.start()
        opened.extend(start_bare_nodes(ports[0], 2, tmp_path / "cache"))
        return runs

    yield open_link
    link, *nodes = opened
    link.__exit__(None, None, None)
    for node in nodes:
        node.join(timeout=10)


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("exit", "the ServerApp process exited with code 7"),
        ("sys-exit", "the ServerApp process exited with code 0"),
        ("raise", "ValueError: boom"),
        ("kill-self", "the ServerApp process was killed by SIGKILL"),
        ("die-while-the-link-waits", "the ServerApp process exited with code 3"),
        ("fork-and-exit", "the ServerApp process exited with code 5"),
        ("receive-bogus", "no reply will come for ['bogus-id']"),
        ("wait-for-a-million", "nodes needed are connected after 3 s"),
        ("hang", "the ServerApp did not call the link for 3 s"),
    ],
)
def test_a_serverapp_that_ends_or_hangs_fails_its_run_and_the_queue_goes_on(
    tmp_path, runs_with_nodes, how, reason
):
    runs = runs_with_nodes(max_idle_s=3.0)
    app_dir = _app(tmp_path / "app")
    bad = runs.submit("tinyapp", {**CONFIG, "how": how}, **_bundle_args(app_dir, "hostile"))
    good = runs.submit("tinyapp", CONFIG, **_bundle_args(app_dir))
    runs.wait(good, timeout_s=120)
    row = runs.row(bad)
    assert row.status == "failed" and reason in (row.error or "")
    assert runs.rounds_done(bad) == 1  # its round is kept; it failed after it
    log = runs.log_of(bad).read(0)[0]
    assert any(reason in line for line in log)
    assert any(f"WARNING about to {how}" in line for line in log)  # from its process
    if how == "raise":
        assert any("Traceback" in line for line in log)  # the bug's traceback is in its log
    model = load_arrays(tmp_path / "runs" / "tinyapp" / str(good) / "model.npz")
    np.testing.assert_array_equal(model["w"].numpy(), np.full(3, 2.0))


def test_a_hung_serverapp_that_is_stopped_is_ended_after_a_grace_period(
    tmp_path, runs_with_nodes, monkeypatch
):
    monkeypatch.setattr(serverproc, "STOP_GRACE_S", 0.5)
    runs = runs_with_nodes()
    app_dir = _app(tmp_path / "app")
    hung = runs.submit("tinyapp", {**CONFIG, "how": "hang"}, **_bundle_args(app_dir, "hostile"))
    good = runs.submit("tinyapp", CONFIG, **_bundle_args(app_dir))
    _wait_for_line(runs.log_of(hung), "round 1:")
    runs.stop(hung)
    runs.wait(good, timeout_s=120)
    assert runs.row(hung).status == "stopped"


def _wait_for_line(run_log, text):
    while True:
        lines, ended = run_log.read(0)
        if any(text in line for line in lines):
            return
        assert not ended, lines
        run_log.read(len(lines), wait_s=1.0)


def test_a_run_in_its_own_process_gives_what_the_same_serverapp_gives_in_process(
    tmp_path, runs_with_nodes
):
    runs = runs_with_nodes()
    app_dir = _app(tmp_path / "app")
    child = runs.submit("tinyapp", CONFIG, **_bundle_args(app_dir))
    runs.wait(child, timeout_s=120)
    server_app = load_object("tinyapp.apps:server", ServerApp, app_dir, fresh=True)
    here = runs.submit("tinyapp", CONFIG, server_app=server_app, **_bundle_args(app_dir))
    runs.wait(here, timeout_s=120)
    folders = [tmp_path / "runs" / "tinyapp" / str(run_id) for run_id in (child, here)]
    models = [load_arrays(folder / "model.npz")["w"].numpy() for folder in folders]
    assert models[0].tobytes() == models[1].tobytes()
    lines = [_metrics(folder) for folder in folders]
    assert lines[0] == lines[1] and len(lines[0]) == 2


def test_a_submitted_run_cut_short_by_a_link_shutdown_resumes_in_a_new_process(tmp_path):
    db, config = tmp_path / "link.db", {**CONFIG, "num-server-rounds": 4, "sleep-s": 0.1}
    app_dir = _app(tmp_path / "app")
    for attempt in range(2):
        ports = []
        with serve_link(
            "127.0.0.1:0",
            insecure=True,
            db=db,
            runs_dir=tmp_path / "runs",
            on_listening=ports.append,
        ) as runs:
            if attempt == 0:
                run_id = runs.submit("tinyapp", config, **_bundle_args(app_dir))
            runs.start()
            nodes = start_bare_nodes(ports[0], 2, tmp_path / "cache")
            if attempt == 0:  # the link shuts down after round 1: the run stays unfinished
                _wait_for_line(runs.log_of(run_id), "round 1:")
            else:
                runs.wait(run_id, timeout_s=120)
        for node in nodes:
            node.join(timeout=10)
    folder = tmp_path / "runs" / "tinyapp" / str(run_id)
    assert "the run resumes after round" in (folder / "log.txt").read_text()
    assert [r["round"] for r in _metrics(folder)] == [1, 2, 3, 4]  # each round once
    model = load_arrays(folder / "model.npz")["w"].numpy()
    np.testing.assert_array_equal(model, np.full(3, 4.0))


def _metrics(folder):
    rounds = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rounds]


def test_a_serverapp_handed_over_in_process_that_calls_sys_exit_fails_its_run_only(
    tmp_path, runs_with_nodes
):
    server_app = ServerApp()

    @server_app.main()
    def leave(grid, context):
        sys.exit(3)

    runs = runs_with_nodes()
    gone = runs.submit("script", {}, server_app=server_app, min_nodes=2, wait_s=30.0)
    good = runs.submit("tinyapp", CONFIG, **_bundle_args(_app(tmp_path / "app")))
    runs.wait(good, timeout_s=120)
    row = runs.row(gone)
    assert row.status == "failed" and "the ServerApp called sys.exit(3)" in (row.error or "")


def test_a_broadcast_model_crosses_to_the_link_once_and_is_shared_there():
    model = ArrayRecord({"w": np.arange(1000.0), "b": np.ones(3)})
    messages = [
        Message.create(
            RecordDict({"arrays": ArrayRecord(model), "config": ConfigRecord({"lr": 0.1})}),
            node_id,
            "train",
        )
        for node_id in (1, 2, 3)
    ]
    parts, layouts = pipe.slim(messages)
    payload = memoryview(b"".join(bytes(memoryview(p)) for p in parts))
    assert payload.nbytes < 1000 * 8 + 2000  # one copy of the model, not three
    received = pipe.unslim(layouts, payload)
    assert [m.metadata for m in received] == [m.metadata for m in messages]
    for got in received:
        assert list(got.content) == ["arrays", "config"]
        assert got.content.config()["lr"] == 0.1
        np.testing.assert_array_equal(got.content.arrays()["w"].numpy(), model["w"].numpy())
    assert received[0].content.arrays()["w"] is received[2].content.arrays()["w"]


def test_a_round_s_model_crosses_to_the_link_only_when_an_observer_there_keeps_it(tmp_path):
    from pollinate.deploy._runlog import RoundLines, RunLog
    from pollinate.deploy._store import StoreRecorder

    store = Store(tmp_path / "link.db")
    lines = RoundLines(RunLog(None))
    assert serverproc._wanted([lines]) == ["round"]
    everything = ["round_start", "round", "arrays", "strategy_state"]
    assert serverproc._wanted([lines, StoreRecorder(store, 1)]) == everything

    class Resumes(RunObserver):
        def on_resume(self, last_round):
            pass

    assert serverproc._wanted([Resumes()]) == ["resume"]
    assert serverproc._wanted([object()]) == []
    store.close()


def test_a_database_from_before_crash_counting_opens_and_counts(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as old:
        old.execute(
            "CREATE TABLE runs (run_id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "run_config TEXT NOT NULL, out_dir TEXT, status TEXT NOT NULL)"
        )
        old.execute("INSERT INTO runs VALUES (7, 'old', '{}', NULL, 'running')")
    old.close()
    store = Store(db)
    assert [r.run_id for r in store.runs()] == [7] and store.crashes(7) == 0
    store.start_attempt(7)
    store.start_attempt(7)
    assert store.crashes(7) == 2
    store.end_attempts(7, still_open=1)
    assert store.crashes(7) == 1
    store.close()


@pytest.mark.parametrize(("crashes", "status"), [(2, "queued"), (3, "failed"), (4, "failed")])
def test_a_restarted_link_resumes_a_run_that_crashed_it_fewer_than_max_crashes_times(
    tmp_path, crashes, status
):
    db = tmp_path / "link.db"
    store = Store(db)
    app = AppRef("0" * 64, "tinyapp.apps:server", "tinyapp.apps:client")
    store.save_run(RunRow(42, "tinyapp", {}, str(tmp_path / "out"), "running", app))
    for _ in range(crashes):  # each start, cut short by the link going down
        store.start_attempt(42)
    store.close()
    with serve_link("127.0.0.1:0", insecure=True, db=db) as runs:  # its queue never starts
        row = runs.row(42)
        assert row.status == status
        if status == "failed":
            assert f"crashed {crashes} times in a row" in (row.error or "")
        else:  # crashed, queued again: stop still works
            assert runs.stop(42).status == "stopped"
    store = Store(db)
    assert store.runs()[0].status == ("failed" if status == "failed" else "stopped")
    store.close()


def test_the_link_refuses_crash_and_idle_limits_that_make_no_sense():
    with pytest.raises(ConfigError, match="max_crashes must be at least 1"):
        serve_link("127.0.0.1:0", insecure=True, max_crashes=0).__enter__()
    with pytest.raises(ConfigError, match="max_idle_s must be"):
        serve_link("127.0.0.1:0", insecure=True, max_idle_s=float("nan")).__enter__()


@pytest.mark.slow
def test_a_run_that_takes_its_link_down_three_times_in_a_row_fails_and_the_next_one_runs(
    tmp_path,
):
    port, db = free_port(), tmp_path / "link.db"
    args = ["link", "--address", f"127.0.0.1:{port}", "--insecure", "--db", db]
    address = f"127.0.0.1:{port}"
    app_dir = _app(tmp_path / "app")
    bundle = pack_app(app_dir)
    link = _start_link(args, tmp_path)
    nodes = []
    try:
        with _control(address, link) as client:
            hostile = client.submit(
                Submission(
                    "tinyapp", bundle, "tinyapp.apps:hostile", "tinyapp.apps:client",
                    {**CONFIG, "how": "kill-link"}, 2, 60.0,
                )
            )  # fmt: skip
            good = client.submit(
                Submission(
                    "tinyapp", bundle, "tinyapp.apps:server", "tinyapp.apps:client", CONFIG, 2, 60
                )
            )
        nodes = start_bare_nodes(port, 2, tmp_path / "cache", give_up_s=120)
        for _ in range(3):  # killed by its run, then restarted with its database
            assert link.wait(timeout=120) == -signal.SIGKILL
            link = _start_link(args, tmp_path)
        with _control(address, link) as client:
            assert list(client.logs(str(good.run_id), follow=True))[-1].status == "finished"
            end = list(client.logs(str(hostile.run_id), follow=True))[-1]
        assert end.status == "failed" and "crashed 3 times in a row" in end.error
        assert link.poll() is None  # the link stays up
    finally:
        link.send_signal(signal.SIGINT)
        link.wait(timeout=30)
    for node in nodes:
        node.join(timeout=10)


def _start_link(args, tmp_path):
    with (tmp_path / "link.log").open("a") as log:  # the link writes to its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "pollinate.cli", *map(str, args)],
            stdout=log,
            stderr=log,
            cwd=tmp_path,
        )


def _control(address, link, timeout=60.0):
    """A Control client, once the link answers."""
    deadline = time.monotonic() + timeout
    while True:
        assert link.poll() is None, "the link exited"
        client = ControlClient(address, None)
        try:
            client.runs()
            return client
        except ConfigError:
            client.close()
            assert time.monotonic() < deadline, "the link did not come up"
            time.sleep(0.1)


def test_a_strategy_receives_in_send_order_on_the_links_grid_in_either_process(
    tmp_path, runs_with_nodes, monkeypatch
):
    """The link's own ordered receive serves the run, so its limit on replies held holds."""
    calls = []
    ordered = LinkGrid.receive_in_order

    def spy(self, message_ids, timeout_s=None):
        calls.append(len(message_ids))
        return ordered(self, message_ids, timeout_s)

    monkeypatch.setattr(LinkGrid, "receive_in_order", spy)
    runs = runs_with_nodes()
    app_dir = _app(tmp_path / "app")
    runs.wait(runs.submit("tinyapp", CONFIG, **_bundle_args(app_dir)), timeout_s=120)
    in_child = len(calls)
    assert in_child >= CONFIG["num-server-rounds"]  # every round's train replies
    server_app = load_object("tinyapp.apps:server", ServerApp, app_dir, fresh=True)
    here = runs.submit("tinyapp", CONFIG, server_app=server_app, **_bundle_args(app_dir))
    runs.wait(here, timeout_s=120)
    assert len(calls) == 2 * in_child  # the same calls, in the link's own process


def test_a_run_that_ends_stops_its_grid_so_no_reply_waits_for_it(
    tmp_path, runs_with_nodes, monkeypatch
):
    reasons = []
    stop = LinkGrid.stop

    def spy(self, reason):
        reasons.append(reason)
        stop(self, reason)

    monkeypatch.setattr(LinkGrid, "stop", spy)
    runs = runs_with_nodes()
    app = _app(tmp_path / "app")
    runs.wait(runs.submit("tinyapp", CONFIG, **_bundle_args(app)), timeout_s=120)
    assert reasons == ["the run ended"]  # a reply waiting for its turn is let go, not left


def test_a_frame_claiming_more_than_it_may_is_refused_before_memory_is_taken():
    import multiprocessing

    mine, theirs = multiprocessing.Pipe()
    channel = pipe.Channel(mine, max_size=1 << 20)
    theirs.send_bytes(b'{"op": "send", "size": 1099511627776}')  # 1 TiB claimed
    with pytest.raises(pipe.ProtocolError, match="size 1099511627776"):
        channel.receive()
    theirs.send_bytes(b'{"op": "receive", "timeout_s": NaN, "size": 0}')
    with pytest.raises(pipe.ProtocolError, match="NaN is not a number"):
        channel.receive()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, "soon"])
def test_a_timeout_from_the_serverapp_must_be_finite_seconds(value):
    with pytest.raises(ValueError):
        serverproc._seconds(value)
    assert serverproc._seconds(None) is None and serverproc._seconds(2) == 2.0


def test_a_storage_error_crosses_the_pipe_whole():
    from pollinate.errors import StorageError

    err = StorageError(28, "No space left on device", "/runs/a/metrics.jsonl")
    back = pipe.error_from(pipe.error_fields(err), AppError)
    assert isinstance(back, StorageError) and str(back) == str(err)
    assert str(back) == "no space left on device writing /runs/a/metrics.jsonl"


def test_a_result_crosses_the_pipe_with_its_strategy_state():
    from pollinate.deploy import _serverchild
    from pollinate.server import Result

    state = ArrayRecord({"m": np.arange(3.0)})
    result = Result(ArrayRecord({"w": np.ones(2)}), [], state)
    parts = _serverchild._result_records(result)
    payload = memoryview(b"".join(bytes(memoryview(p)) for p in parts))
    back = serverproc._result({"rounds": []}, payload)
    assert back.strategy_state == state and back.arrays == result.arrays
