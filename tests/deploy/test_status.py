"""What a link's operator sees of its nodes: counts, failures and their reasons, over Control."""

import dataclasses
import json
import time

import pytest
from click.testing import CliRunner

from pollinate import ClientApp, Message, MetricRecord, RecordDict
from pollinate.cli._main import cli
from pollinate.deploy import (
    ControlClient,
    ControlLinkView,
    LocalLinkView,
    NodeFailure,
    NodeStatus,
    RunSummary,
    channel_credentials,
    make_dev_certs,
    serve_link,
)
from pollinate.deploy._control import ControlService
from pollinate.deploy._grid import LinkGrid
from pollinate.deploy._nodestats import MAX_FAILURES, MAX_REASON, NodeStats
from pollinate.errors import ConfigError, Forbidden, NotFound, WireError
from pollinate.message import ErrorCode

from .submitted import start_bare_nodes, write_app
from .test_control import _submission

flaky = ClientApp()


@flaky.train()
def train(msg, context):
    """Partition 1's ClientApp raises, with a reason far longer than the link keeps."""
    if context.node_config["partition-id"] == 1:
        raise ValueError("partition 1 is broken " + "x" * 2000)
    return msg.reply(RecordDict({"metrics": MetricRecord({"num-examples": 1})}))


@pytest.fixture
def flaky_nodes(start_nodes):
    """Start nodes running ``flaky``; they leave when the link says goodbye."""
    return lambda count: start_nodes(count, app=flaky)


def _by_partition(link):
    return {n.node_config["partition-id"]: n for n in link.node_status()}


def test_a_clientapp_that_raises_is_counted_with_its_reason_cut_short(link, flaky_nodes):
    flaky_nodes(2)
    grid = link.grid(run_id=3, run_config={})
    grid.wait_for_nodes(2, timeout_s=20)
    before = time.time()
    messages = [Message.create(RecordDict(), node, "train") for node in grid.node_ids()]
    replies = list(grid.receive(grid.send(messages), timeout_s=60))
    assert sorted(r.error.code if r.error else 0 for r in replies) == [
        0,
        ErrorCode.CLIENT_APP_RAISED,
    ]
    nodes = _by_partition(link)
    good, bad = nodes[0], nodes[1]
    assert [n.node_id for n in link.node_status()] == sorted(n.node_id for n in nodes.values())
    assert (good.tasks_sent, good.tasks_done, good.tasks_failed, good.failures) == (1, 1, 0, ())
    assert (bad.tasks_sent, bad.tasks_done, bad.tasks_failed, bad.tasks_lost) == (1, 0, 1, 0)
    (failure,) = bad.failures
    assert failure.run_id == 3 and not failure.lost and failure.at >= before
    assert failure.reason.startswith("client app raised: ValueError: partition 1 is broken xx")
    assert len(failure.reason) == MAX_REASON and failure.reason.endswith("…")
    assert bad.connected and bad.last_seen is not None and bad.last_seen >= before - 1


def test_a_node_that_disconnects_has_its_task_lost_and_shows_gone(link, flaky_nodes, node_process):
    flaky_nodes(1)
    victim = node_process(2)
    grid = link.grid(run_id=5, run_config={"slow-partitions": "2", "sleep-s": 60.0})
    grid.wait_for_nodes(2, timeout_s=30)
    victim_id = next(n.node_id for n in link.node_status() if n.node_config["partition-id"] == 2)
    ids = grid.send([Message.create(RecordDict(), victim_id, "train")])
    victim.kill()
    (reply,) = grid.receive(ids, timeout_s=60)
    assert reply.error.code == ErrorCode.NODE_UNAVAILABLE
    gone = _by_partition(link)[2]
    assert not gone.connected and gone.last_seen is not None
    assert (gone.tasks_sent, gone.tasks_done, gone.tasks_failed, gone.tasks_lost) == (1, 0, 1, 1)
    (failure,) = gone.failures
    assert failure.lost and failure.run_id == 5
    assert failure.reason.startswith(f"node unavailable: node {victim_id} was lost")
    assert _by_partition(link)[0].connected


def test_a_node_keeps_its_most_recent_failures_only_and_forgotten_nodes_go():
    stats = NodeStats()
    stats.add(7)
    for i in range(MAX_FAILURES + 5):
        stats.sent(7)
        stats.failed(7, 1, f"failure {i}", lost=i % 2 == 0)
    stats.failed(8, 1, "a node the link does not know is not counted")
    status = stats.status(7, True, None, {})
    assert (status.tasks_sent, status.tasks_failed, status.tasks_lost) == (25, 25, 13)
    assert [f.reason for f in status.failures] == [f"failure {i}" for i in range(5, 25)]
    stats.forget([7])
    assert stats.status(7, False, None, {}).tasks_sent == 0
    assert stats.status(8, False, None, {}).failures == ()


class _Everywhere:
    """A transport that reaches every node (the grid's counting needs no network)."""

    def push(self, node_id, message_id, parts, header):
        return True


def test_timed_out_abandoned_and_unreadable_replies_are_counted_with_their_kind():
    stats = NodeStats()
    for node in (1, 2, 3, 4):
        stats.add(node)
    grid = LinkGrid(_Everywhere(), 9, {}, stats=stats)
    silent, abandoned, unreadable, answered = grid.send(
        [Message.create(RecordDict(), node, "train") for node in (1, 2, 3, 4)]
    )
    sent = {m.metadata.message_id: m for m in grid._waiting.values()}
    grid.refuse_reply(3, unreadable, "the reply is not a valid message: truncated")
    grid.take_reply(4, answered, sent[answered].reply(RecordDict()))
    grid.abandon([abandoned])
    (timed_out,) = grid.receive([silent], timeout_s=0.05)
    assert timed_out.error.code == ErrorCode.TIMEOUT
    status = {node: stats.status(node, True, None, {}) for node in (1, 2, 3, 4)}
    counts = [(s.tasks_sent, s.tasks_done, s.tasks_failed, s.tasks_lost) for s in status.values()]
    assert counts == [(1, 0, 1, 1), (1, 0, 1, 1), (1, 0, 1, 0), (1, 1, 0, 0)]
    reasons = [status[node].failures[0].reason for node in (1, 2, 3)]
    assert reasons[0].startswith("timeout: no reply within 0.05 s")
    assert reasons[1] == "abandoned: the run stopped waiting for its reply"
    assert reasons[2] == "invalid reply: the reply is not a valid message: truncated"


def _status_json(**changes):
    payload = NodeStatus(
        42, True, 1.5e9, 3, 2, 1, (NodeFailure(1.5e9, 9, "boom"),), {"partition-id": 0}, 0
    ).to_json()
    return {**payload, **changes}


def test_a_node_status_travels_as_json_and_back():
    status = NodeStatus.from_json(_status_json())
    assert NodeStatus.from_json(json.loads(json.dumps(status.to_json()))) == status
    assert status.failures == (NodeFailure(1.5e9, 9, "boom", False),)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ([], "must be a JSON object, got list"),
        (_status_json(node_id=-1), "'node_id' must be an int from 0"),
        (_status_json(node_id=True), "'node_id' must be an int"),
        (_status_json(node_id=2**80), "'node_id' must be an int"),
        (_status_json(connected="yes"), "'connected' of type bool"),
        (_status_json(last_seen=float("nan")), "'last_seen' must be a finite number"),
        (_status_json(last_seen="now"), "'last_seen' must be a finite number"),
        (_status_json(tasks_sent=1.0), "'tasks_sent' must be an int"),
        (_status_json(tasks_lost=None), "'tasks_lost' must be an int"),
        (_status_json(failures={}), "'failures' of type list"),
        (_status_json(failures=[{"at": 1.0}] * 21), "21 failures, more than 20"),
        (_status_json(failures=["boom"]), "a node failure must be a JSON object"),
        (_status_json(failures=[{"at": 1, "run_id": 1, "reason": 5, "lost": False}]), "reason"),
        (
            _status_json(failures=[{"at": 1, "run_id": 1, "reason": "x" * 501, "lost": False}]),
            "501 characters, more than 500",
        ),
        (_status_json(failures=[{"at": 1, "run_id": -1, "reason": "", "lost": False}]), "run_id"),
        (_status_json(node_config=[1]), "'node_config' must be a JSON object"),
        (_status_json(node_config={"a": [1]}), "node_config['a'] must be a bool"),
        (_status_json(node_config={"a": float("inf")}), "node_config['a'] must be a bool"),
    ],
)
def test_a_hostile_node_status_is_a_wire_error_not_a_crash(payload, problem):
    with pytest.raises(WireError, match=problem.replace("[", r"\[").replace("(", r"\(")):
        NodeStatus.from_json(payload)


_SUMMARY = {
    "run_id": 7,
    "name": "demo",
    "status": "running",
    "rounds_done": 2,
    "submitted_at": 1.0,
    "started_at": 2.0,
    "ended_at": None,
    "error": None,
    "out_dir": "/runs/demo",
    "run_config": {"lr": 0.1},
}


def test_a_run_summary_travels_as_json_and_back():
    summary = RunSummary.from_json(json.loads(json.dumps(_SUMMARY)))
    assert summary.to_json() == _SUMMARY


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"run_id": "7"}, "'run_id' must be an int"),
        ({"name": None}, "'name' must be a string"),
        ({"status": ["running"]}, "'status' must be a string"),
        ({"rounds_done": -1}, "'rounds_done' must be an int"),
        ({"submitted_at": float("nan")}, "'submitted_at' must be a finite number"),
        ({"started_at": "now"}, "'started_at' must be a finite number"),
        ({"error": 3}, "'error' must be a string"),
        ({"run_config": []}, "'run_config' must be a JSON object"),
        ({"unexpected": 1}, None),  # extra keys from a newer link are ignored
    ],
)
def test_a_hostile_run_summary_is_a_wire_error_not_a_type_error(change, problem):
    payload = {**_SUMMARY, **change}
    if problem is None:
        assert RunSummary.from_json(payload).run_id == 7
        return
    with pytest.raises(WireError, match=problem):
        RunSummary.from_json(payload)
    with pytest.raises(WireError, match="must be a JSON object"):
        RunSummary.from_json([payload])


def test_list_nodes_needs_an_operator_certificate_on_a_link_with_mtls(tmp_path):
    files = make_dev_certs(tmp_path / "certs", nodes=1, operators=1)
    ports = []
    with serve_link(
        "127.0.0.1:0", certs=tmp_path / "certs", mtls=True, on_listening=ports.append
    ) as runs:
        runs.start()
        address = f"127.0.0.1:{ports[0]}"
        operator = channel_credentials(
            files.ca_cert, files.operator_certs[0], files.operator_keys[0]
        )
        with ControlClient(address, operator) as client:
            assert client.list_nodes() == []
        node = channel_credentials(files.ca_cert, files.node_certs[0], files.node_keys[0])
        with (
            ControlClient(address, node) as client,
            pytest.raises(Forbidden, match="may not make Control calls"),
        ):
            client.list_nodes()


class _Remote:
    """A gRPC call's context from another machine, with no credentials."""

    def peer(self):
        return "ipv4:10.1.2.3:5000"

    def invocation_metadata(self):
        return ()

    def abort(self, code, details):
        raise PermissionError(code, details)


def test_without_credentials_only_this_machine_may_list_the_nodes():
    service = ControlService(runs=None, nodes=lambda: [])
    with pytest.raises(PermissionError, match="--control-keys"):
        list(service._list_nodes(b"", _Remote()))


def test_both_link_views_show_the_runs_and_nodes_and_refuse_to_stop_an_ended_run(
    tmp_path, link_port
):
    address = f"127.0.0.1:{link_port}"
    with ControlClient(address, None) as client:
        run = client.submit(_submission(write_app(tmp_path / "app")))
        assert list(client.logs(str(run.run_id), follow=True))[-1].status == "finished"
        remote = ControlLinkView(client)
        nodes = remote.nodes()
        assert len(nodes) == 2 and all(n.connected for n in nodes)
        assert all(n.tasks_sent == n.tasks_done > 0 and n.tasks_failed == 0 for n in nodes)
        assert [r.run_id for r in remote.runs()] == [run.run_id]
        folder = tmp_path / "runs" / "tinyapp" / str(run.run_id)
        (summary,) = remote.runs()
        assert remote.run_dir(summary) is None  # the operator named no runs folder
        assert ControlLinkView(client, runs_dir=tmp_path / "runs").run_dir(summary) == folder
        with pytest.raises(ConfigError, match=f"run {run.run_id} had already ended: finished"):
            remote.stop(run.run_id)
        prefix = int(str(run.run_id)[:3])  # pollinate stop takes it; a view wants the id
        with pytest.raises(NotFound, match=f"no run {prefix} on this link"):
            remote.stop(prefix)


def test_the_local_view_is_the_same_as_the_remote_one(tmp_path):
    ports = []
    with serve_link(
        "127.0.0.1:0", insecure=True, runs_dir=tmp_path / "runs", on_listening=ports.append
    ) as runs:
        runs.start()
        nodes = start_bare_nodes(ports[0], 2, tmp_path / "cache")
        local = LocalLinkView(runs.link, runs)
        with ControlClient(f"127.0.0.1:{ports[0]}", None) as client:
            run = client.submit(_submission(write_app(tmp_path / "app")))
            assert list(client.logs(str(run.run_id), follow=True))[-1].status == "finished"
            remote = ControlLinkView(client)
            assert local.runs() == remote.runs()
            assert [_steady(n) for n in local.nodes()] == [_steady(n) for n in remote.nodes()]
            folder = tmp_path / "runs" / "tinyapp" / str(run.run_id)
            assert local.run_dir(local.runs()[0]) == folder
            with pytest.raises(ConfigError, match="had already ended: finished"):
                local.stop(run.run_id)
            prefix = int(str(run.run_id)[:3])
            with pytest.raises(NotFound, match=f"no run {prefix} on this link"):
                local.stop(prefix)
            queued = client.submit(_submission(write_app(tmp_path / "app2"), **{"sleep-s": 5.0}))
            local.stop(queued.run_id)
            assert client.runs()[-1].status in ("stopped", "running")
    for node in nodes:
        node.join(timeout=10)


def test_ls_nodes_prints_the_node_table_and_its_json(link_port):
    address = f"127.0.0.1:{link_port}"
    with ControlClient(address, None) as client:
        _eventually(lambda: len(client.list_nodes()) == 2)
    runner = CliRunner()
    shown = runner.invoke(cli, ["ls", "--nodes", "--link", address, "--insecure", "--json"])
    assert shown.exit_code == 0, shown.output
    nodes = json.loads(shown.stdout)
    assert sorted(n["node_config"]["partition-id"] for n in nodes) == [0, 1]
    table = runner.invoke(cli, ["ls", "--nodes", "--link", address, "--insecure"])
    assert table.exit_code == 0, table.output
    assert "connected" in table.output and str(nodes[0]["node_id"]) in table.output


def _steady(status):
    """``status`` without its last heartbeat's time, which moves between two looks."""
    return dataclasses.replace(status, last_seen=None)


def _eventually(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


_HOSTILE_REASON = "\x1b[2J\x1b]8;;http://evil\x07click\x1b]8;;\x07 \u202eexe.txt\n[red]x[/]"


def test_a_node_s_control_characters_are_kept_written_out_never_sent_to_a_terminal():
    stats = NodeStats()
    stats.add(7)
    stats.failed(7, 1, _HOSTILE_REASON)
    (failure,) = stats.status(7, True, None, {}).failures
    assert failure.reason == (
        "\\x1b[2J\\x1b]8;;http://evil\\x07click\\x1b]8;;\\x07 \\u202eexe.txt\\n[red]x[/]"
    )


def test_ls_nodes_shows_an_older_link_s_raw_reasons_without_their_control_characters():
    from pollinate.cli._control import _node_row

    failure = NodeFailure(1.0, 1, _HOSTILE_REASON)
    node = NodeStatus(7, True, None, 1, 0, 1, (failure,), {})
    shown = _node_row(node)[-1]
    assert not any(c in shown for c in "\x1b\x07\n\u202e")
    assert "\\[red]" in shown  # rich markup escaped too


class _RunsOnly:
    """A Control client whose link names each run's folder as it likes."""

    def __init__(self, **out_dirs: str) -> None:
        self.out_dirs = list(out_dirs.values())

    def runs(self) -> list[RunSummary]:
        return [
            RunSummary(i, "run", "running", 1, 1.7e9, None, None, None, out_dir, {})
            for i, out_dir in enumerate(self.out_dirs)
        ]


def test_a_remote_link_s_run_folder_is_used_only_inside_the_operator_s_runs_folder(tmp_path):
    runs_dir = tmp_path / "runs"
    (runs_dir / "app" / "7").mkdir(parents=True)
    (runs_dir / "escape").symlink_to(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    client = _RunsOnly(
        inside=str(runs_dir / "app" / "7"),
        root="/",
        dotdot=str(runs_dir / ".." / "elsewhere"),
        symlink=str(runs_dir / "escape" / "elsewhere"),
    )
    view = ControlLinkView(client, runs_dir=runs_dir)  # type: ignore[arg-type]
    found = [view.run_dir(run) for run in client.runs()]
    assert found == [runs_dir / "app" / "7", None, None, None]
    assert ControlLinkView(client).run_dir(client.runs()[0]) is None  # type: ignore[arg-type]


def test_a_run_folder_the_link_cannot_write_costs_a_warning_not_the_run(tmp_path, caplog):
    from pollinate.deploy._runfile import write_run_file
    from pollinate.deploy._store import RunRow

    (tmp_path / "full").write_text("a file where the run's folder should go")
    row = RunRow(7, "demo", {}, str(tmp_path / "full" / "run"), status="finished")
    write_run_file(row, 2, None)  # no exception: its rounds are in the database
    assert "run 7:" in caplog.text and "metrics.jsonl" in caplog.text
