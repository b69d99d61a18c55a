"""The Control service: submitted runs travel with their code, queue, log, list and stop."""

import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pollinate.deploy import NodeKey, make_dev_certs, serve_link
from pollinate.deploy._bundle import pack_app
from pollinate.deploy._control import ControlClient, ControlService, Submission
from pollinate.deploy._store import AppRef, Store
from pollinate.errors import AuthError, ConfigError, NotFound, RoundError
from pollinate.server import load_arrays

from .submitted import start_bare_nodes, write_app


@pytest.fixture
def nodeless_port(tmp_path):
    """The port of a plain-text link that takes submitted runs, with no nodes (for refusals)."""
    ports = []
    with serve_link(
        "127.0.0.1:0", insecure=True, runs_dir=tmp_path / "runs", on_listening=ports.append
    ) as runs:
        runs.start()
        yield ports[0]


def _submission(app_dir, **config):
    run_config = {"num-server-rounds": 2, "sleep-s": 0.0, "step": 1.0, **config}
    bundle = pack_app(app_dir)
    return Submission(
        "tinyapp", bundle, "tinyapp.apps:server", "tinyapp.apps:client", run_config, 2, 30.0
    )


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_submitted_run_brings_its_code_to_bare_nodes_and_logs_its_rounds(tmp_path, link_port):
    port = link_port
    app_dir = write_app(tmp_path / "app")
    with ControlClient(f"127.0.0.1:{port}", None) as client:
        submitted = client.submit(_submission(app_dir, step=2.0))
        lines = list(client.logs(str(submitted.run_id)[:8], follow=True))
        listed = client.runs()
    *text, end = lines
    assert end.status == "finished" and end.rounds_done == 2
    assert any("round 2: train 2 ok" in line for line in text)
    assert [(r.run_id, r.status) for r in listed] == [(submitted.run_id, "finished")]
    model = load_arrays(tmp_path / "runs" / "tinyapp" / str(submitted.run_id) / "model.npz")
    np.testing.assert_allclose(model["w"].numpy(), np.full(3, 4.0))  # 2 rounds of +2
    digest = pack_app(app_dir).digest
    assert (tmp_path / "cache" / "node0" / digest / "tinyapp" / "apps.py").is_file()  # fetched


def test_two_versions_of_an_app_run_one_after_the_other_each_with_its_own_code(tmp_path, link_port):
    port = link_port
    first = write_app(tmp_path / "v1", step=1.0)
    second = write_app(tmp_path / "v2", step=1.0)
    apps = second / "tinyapp" / "apps.py"
    apps.write_text(apps.read_text().replace("a.numpy() + step", "a.numpy() - step"))
    with ControlClient(f"127.0.0.1:{port}", None) as client:
        one = client.submit(_submission(first))
        two = client.submit(_submission(second))
        ends = [list(client.logs(str(run.run_id), follow=True))[-1] for run in (one, two)]
        assert [end.status for end in ends] == ["finished", "finished"]
        assert ends[1].started_at >= ends[0].ended_at  # one run at a time
    folder = tmp_path / "runs" / "tinyapp"
    assert load_arrays(folder / str(one.run_id) / "model.npz")["w"].numpy()[0] == 2.0
    assert load_arrays(folder / str(two.run_id) / "model.npz")["w"].numpy()[0] == -2.0


def test_stop_ends_a_running_run_at_its_next_message_and_a_queued_one_before_it_starts(
    tmp_path, link_port
):
    port = link_port
    app_dir = write_app(tmp_path / "app")
    with ControlClient(f"127.0.0.1:{port}", None) as client:
        slow = client.submit(_submission(app_dir, **{"num-server-rounds": 100, "sleep-s": 0.2}))
        queued = client.submit(_submission(app_dir))
        _wait_for(lambda: client.runs()[0].rounds_done >= 1)
        assert client.stop(str(queued.run_id)).status == "stopped"
        client.stop(str(slow.run_id))
        *_, end = client.logs(str(slow.run_id), follow=True)
        assert end.status == "stopped" and 1 <= end.rounds_done < 100
        assert client.stop(str(slow.run_id)).status == "stopped"  # stopping twice is harmless
        log = [line for line in client.logs(str(queued.run_id)) if isinstance(line, str)]
    assert "stopped before it started" in log[-1]
    assert not any("waiting for" in line for line in log)


def test_a_submission_of_unknown_code_or_config_fails_the_run_with_a_clear_reason(
    tmp_path, link_port
):
    port = link_port
    app_dir = write_app(tmp_path / "app")
    bad = dataclasses.replace(_submission(app_dir), serverapp="tinyapp.nowhere:server")
    with ControlClient(f"127.0.0.1:{port}", None) as client:
        run = client.submit(bad)
        *_, end = client.logs(str(run.run_id), follow=True)
        assert end.status == "failed"
        assert "cannot find module 'tinyapp.nowhere'" in end.error
        with pytest.raises(NotFound, match=r"no run '0' on this link"):
            client.stop("0")  # no run id starts with 0


def test_control_requests_need_an_operator_key_when_the_link_has_control_keys(tmp_path):
    files = make_dev_certs(tmp_path / "certs", nodes=2, signing_keys=True)
    operator, stranger = (NodeKey.load(k) for k in files.node_keys)
    ports = []
    with serve_link(
        "127.0.0.1:0",
        insecure=True,
        control_keys=files.node_public_keys[0],
        on_listening=ports.append,
    ) as runs:
        runs.start()
        address = f"127.0.0.1:{ports[0]}"
        with ControlClient(address, None, operator) as client:
            assert client.runs() == [] and client.list_nodes() == []
        for key, problem in ((None, "not signed"), (stranger, "not registered")):
            for call in (ControlClient.runs, ControlClient.list_nodes):
                with (
                    ControlClient(address, None, key) as client,
                    pytest.raises(AuthError, match=problem),
                ):
                    call(client)


class _Context:
    def __init__(self, peer):
        self._peer = peer

    def peer(self):
        return self._peer

    def invocation_metadata(self):
        return ()


def test_without_control_keys_only_this_machine_may_control_the_link():
    service = ControlService(runs=None)
    service._authorize("/x", b"", _Context("ipv4:127.0.0.1:5000"))
    service._authorize("/x", b"", _Context("ipv6:[::1]:5000"))
    with pytest.raises(PermissionError, match="--control-keys"):
        service._authorize("/x", b"", _Context("ipv4:10.1.2.3:5000"))


def test_a_restarted_link_resumes_its_submitted_runs_in_their_order(tmp_path):
    app_dir = write_app(tmp_path / "app")
    db = tmp_path / "link.db"
    with serve_link("127.0.0.1:0", insecure=True, db=db, runs_dir=tmp_path / "runs") as runs:
        first = runs.submit(
            "tinyapp",
            {"num-server-rounds": 1, "sleep-s": 0.0, "step": 1.0},
            **_bundle_args(app_dir),
        )
        second = runs.submit(
            "tinyapp",
            {"num-server-rounds": 1, "sleep-s": 0.0, "step": 3.0},
            **_bundle_args(app_dir),
        )
        # never started: the link goes down with both queued
    assert [r.status for r in Store(db).runs()] == ["queued", "queued"]
    ports = []
    with serve_link(
        "127.0.0.1:0", insecure=True, db=db, runs_dir=tmp_path / "runs", on_listening=ports.append
    ) as runs:
        runs.start()
        start_bare_nodes(ports[0], 2, tmp_path / "cache")
        runs.wait(first, timeout_s=60)
        runs.wait(second, timeout_s=60)
        assert [row.status for row, _ in runs.rows()] == ["finished", "finished"]
    folder = tmp_path / "runs" / "tinyapp"
    assert load_arrays(folder / str(second) / "model.npz")["w"].numpy()[0] == 3.0


def _bundle_args(app_dir):
    from pollinate.deploy._store import AppRef

    bundle = pack_app(app_dir)
    app = AppRef(bundle.digest, "tinyapp.apps:server", "tinyapp.apps:client")
    return {"bundle": bundle, "app": app, "min_nodes": 2, "wait_s": 30.0}


def test_a_node_with_its_own_app_refuses_runs_of_another_app(tmp_path):
    import threading

    from pollinate.deploy import Backoff, run_node

    from .node_apps import app as own_app

    ports = []
    with serve_link("127.0.0.1:0", insecure=True, on_listening=ports.append) as runs:
        runs.start()
        for _ in range(2):
            threading.Thread(
                target=run_node,
                args=(f"127.0.0.1:{ports[0]}", own_app),
                kwargs={"app_name": "otherapp", "backoff": Backoff(give_up_s=5)},
                daemon=True,
            ).start()
        run_id = runs.submit(
            "tinyapp",
            {"num-server-rounds": 1, "sleep-s": 0.0, "step": 1.0},
            **_bundle_args(write_app(tmp_path / "app")),
        )
        with pytest.raises(RoundError, match="this node serves the app 'otherapp', not 'tinyapp'"):
            runs.wait(run_id, timeout_s=60)


@pytest.mark.parametrize(
    ("peer", "local"),
    [
        ("ipv4:127.0.0.1:5000", True),
        ("ipv6:%5B::1%5D:5000", True),  # how gRPC spells [::1]
        ("ipv6:%5B::ffff:127.0.0.1%5D:5000", True),
        ("unix:/tmp/link.sock", True),
        ("ipv4:10.1.2.3:5000", False),
        ("ipv6:%5B2001:db8::1%5D:5000", False),
        ("nonsense", False),
    ],
)
def test_this_machine_is_recognised_however_grpc_spells_it(peer, local):
    from pollinate.deploy._control import _is_local

    assert _is_local(peer) is local


def test_long_logs_and_long_run_lists_travel_in_pieces(tmp_path):
    ports = []
    with serve_link("127.0.0.1:0", insecure=True, on_listening=ports.append) as runs:
        runs.start()  # no nodes: the first run waits for them, the rest queue behind it
        app_dir = write_app(tmp_path / "app")
        big = {"num-server-rounds": 1, "sleep-s": 0.0, "step": 1.0, "notes": "x" * 30_000}
        with ControlClient(f"127.0.0.1:{ports[0]}", None) as client:
            ids = [client.submit(_submission(app_dir, **big)).run_id for _ in range(45)]
            assert [r.run_id for r in client.runs()] == ids  # about 1.4 MB of run configs
            for i in range(3000):
                runs.log_of(ids[0]).write(f"line {i} " + "y" * 100)
            lines = [line for line in client.logs(str(ids[0])) if isinstance(line, str)]
            assert len(lines) >= 3000 and lines[-1].endswith("line 2999 " + "y" * 100)


def test_a_failing_run_or_a_bad_submission_never_stops_the_queue(tmp_path, link_port, monkeypatch):
    from pollinate.deploy._runs import Runs

    app_dir = write_app(tmp_path / "app")
    with ControlClient(f"127.0.0.1:{link_port}", None) as client:
        long_name = dataclasses.replace(_submission(app_dir), name="n" * 300)
        with pytest.raises(ConfigError, match="name must have 1 to 100 characters"):
            client.submit(long_name)
        with pytest.raises(NotFound, match="run ids are digits"):
            client.stop("²")
        real_execute = Runs._execute
        calls = []

        def broken_once(self, run):
            calls.append(run)
            if len(calls) == 1:
                raise OSError("disk full")
            return real_execute(self, run)

        monkeypatch.setattr(Runs, "_execute", broken_once)
        first = client.submit(_submission(app_dir))
        second = client.submit(_submission(app_dir))
        assert list(client.logs(str(second.run_id), follow=True))[-1].status == "finished"
        end = list(client.logs(str(first.run_id), follow=True))[-1]
        assert end.status == "failed" and "disk full" in end.error


def test_an_interrupted_run_can_be_stopped_and_then_never_resumes(tmp_path):
    from pollinate.deploy._store import RunRow

    db = tmp_path / "link.db"
    store = Store(db)
    store.save_run(RunRow(42, "script", {}, str(tmp_path / "out"), status="running"))
    store.close()
    ports = []
    with serve_link("127.0.0.1:0", insecure=True, db=db, on_listening=ports.append) as runs:
        runs.start()
        with ControlClient(f"127.0.0.1:{ports[0]}", None) as client:
            assert client.runs()[0].status == "interrupted"
            assert client.stop("42").status == "stopped"
            assert list(client.logs("42", follow=True))[-1].status == "stopped"  # ends at once


def test_two_submissions_of_the_same_code_at_once_keep_one_whole_bundle(tmp_path):
    import threading

    from pollinate.deploy._link import Link
    from pollinate.deploy._runs import Runs

    runs = Runs(Link(credentials=None), None, Store(tmp_path / "link.db"))
    bundle = pack_app(write_app(tmp_path / "app"))
    errors = []

    def keep():
        try:
            runs._keep_bundle(bundle)
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=keep) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and runs.bundle(bundle.digest) == bundle.data
    assert [p.name for p in (tmp_path / "link.db.apps").iterdir()] == [f"{bundle.digest}.zip"]


@pytest.mark.parametrize(
    ("node_id", "code"),
    [
        (12345, "UNAUTHENTICATED"),
        ([1], "INVALID_ARGUMENT"),
        ("1", "INVALID_ARGUMENT"),
        (None, "INVALID_ARGUMENT"),
        (2**70, "INVALID_ARGUMENT"),
    ],
)
def test_an_app_request_from_no_registered_node_is_refused_not_crashed_on(link, node_id, code):
    import grpc

    from pollinate.deploy._frames import Frame, encode_frame
    from pollinate.deploy._link import GET_APP_METHOD

    request = encode_frame(Frame("get_app", {"node_id": node_id, "token": "t", "digest": "0"}))
    with (
        grpc.insecure_channel(f"127.0.0.1:{link.port}") as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        list(channel.unary_stream(GET_APP_METHOD)(request, timeout=10))
    assert refused.value.code() == getattr(grpc.StatusCode, code)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b'"total":true', "'total' must be an int >= 0, got true"),
        (b'"total":1,"min_nodes":1e999', "1e999 is not a finite number"),
        (b'"total":1,"min_nodes":false', "'min_nodes' must be an int >= 0"),
        (b'"total":' + b"4" * 5000, "an integer of 5000 digits"),
        (b'"total":1,"run_config":{"lr":NaN}', "holds NaN, which is not JSON"),
    ],
)
def test_a_submission_with_hostile_header_fields_gets_invalid_argument(
    nodeless_port, header, reason
):
    import grpc

    from pollinate.deploy._control import SUBMIT_METHOD

    text = b'{"kind":"chunk","message_id":"submit","offset":0,' + header + b"}"
    frame = b"PLF\x01" + len(text).to_bytes(4, "little") + text + b"x"
    with (
        grpc.insecure_channel(f"127.0.0.1:{nodeless_port}") as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        channel.stream_unary(SUBMIT_METHOD)(iter([frame]), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in refused.value.details()


def test_a_submitted_bundle_that_unpacks_to_a_gib_is_refused_at_once(tmp_path, nodeless_port):
    from pollinate.deploy._bundle import AppBundle

    from .test_bundle import deflated_zeros, handmade_zip

    bomb = AppBundle.of(handmade_zip("pyproject.toml", deflated_zeros(1024), 1 << 30))
    submission = dataclasses.replace(_submission(write_app(tmp_path / "app")), bundle=bomb)
    with (
        ControlClient(f"127.0.0.1:{nodeless_port}", None) as client,
        pytest.raises(ConfigError, match=r"refused: app bundle .*unpacks to more than"),
    ):
        client.submit(submission)
    with ControlClient(f"127.0.0.1:{nodeless_port}", None) as client:
        assert client.runs() == []  # nothing was queued


def test_a_submission_the_links_disk_cannot_keep_is_refused_as_the_links_trouble(
    tmp_path, nodeless_port, monkeypatch
):
    import grpc

    from pollinate.deploy import _rpc

    calls = []
    as_error = _rpc.as_pollinate_error

    def spy(err, address, whom=""):
        calls.append(err.code())
        return as_error(err, address, whom)

    monkeypatch.setattr(_rpc, "as_pollinate_error", spy)
    monkeypatch.setenv("POLLINATE_FAULT_AT", "write.written")
    monkeypatch.setenv("POLLINATE_FAULT_ON", "*.zip")
    monkeypatch.setenv("POLLINATE_FAULT", "enospc")
    with (
        ControlClient(f"127.0.0.1:{nodeless_port}", None) as client,
        pytest.raises(ConfigError, match=r"refused: no space left on device writing .*\.zip"),
    ):
        client.submit(_submission(write_app(tmp_path / "app")))
    assert calls == [grpc.StatusCode.RESOURCE_EXHAUSTED]  # not INVALID_ARGUMENT: not the request


def test_every_node_fetching_a_bundle_shares_one_copy(tmp_path):
    from pollinate.deploy import Link, Runs

    with Link(credentials=None) as link:
        runs = Runs(link, tmp_path / "runs")
        bundle = pack_app(write_app(tmp_path / "app"))
        runs.submit(
            "tinyapp", {}, bundle=bundle, app=AppRef(bundle.digest, "a:b", "a:c"), min_nodes=1
        )
        assert runs.bundle(bundle.digest) is runs.bundle(bundle.digest) == bundle.data
        runs.close()


@pytest.mark.timeout(120)
def test_log_followers_never_take_the_places_of_ls_and_stop(tmp_path, nodeless_port):
    from pollinate.deploy._control import MAX_FOLLOWERS

    address = f"127.0.0.1:{nodeless_port}"
    with ControlClient(address, None) as client:
        run = client.submit(_submission(write_app(tmp_path / "app")))  # waits for nodes
    following = threading.Barrier(MAX_FOLLOWERS + 1)

    def follow():
        with ControlClient(address, None) as follower:
            lines = follower.logs(str(run.run_id), follow=True)
            next(lines)
            following.wait()
            for _ in lines:  # until the run is stopped
                pass

    threads = [threading.Thread(target=follow, daemon=True) for _ in range(MAX_FOLLOWERS)]
    for thread in threads:
        thread.start()
    following.wait(60)
    with ControlClient(address, None) as client:
        with pytest.raises(ConfigError, match="logs are followed already"):
            next(client.logs(str(run.run_id), follow=True))
        assert [r.run_id for r in client.runs()] == [run.run_id]  # ls still gets in
        assert client.stop(str(run.run_id)).status in ("stopped", "queued", "running")
    for thread in threads:
        thread.join(30)


def test_a_submitted_run_s_folder_has_a_run_json_like_pollinate_run_s(tmp_path, link_port):
    from pollinate.dashboard._runpages import run_body

    app_dir = write_app(tmp_path / "app")
    with ControlClient(f"127.0.0.1:{link_port}", None) as client:
        submitted = client.submit(_submission(app_dir, step=2.0))
        (*_, end) = client.logs(str(submitted.run_id), follow=True)
    info = json.loads((Path(end.out_dir) / "run.json").read_text())
    assert info["run_id"] == submitted.run_id and info["status"] == "finished"
    assert info["app"] == {
        "name": "tinyapp",
        "serverapp": "tinyapp.apps:server",
        "clientapp": "tinyapp.apps:client",
    }
    assert info["run_config"]["step"] == 2.0 and info["num_rounds"] == 2
    assert info["wall_time_s"] > 0 and info["started_at"] and info["federation"]["name"] == "link"
    shown = run_body(Path(end.out_dir))  # the dashboard's header of the run
    assert shown["app_name"] == "tinyapp" and shown["run"].status == "finished"
