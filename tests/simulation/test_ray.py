"""The Ray backend on a real two-node Ray cluster on 127.0.0.1, started once for the module.

The cluster's two nodes have one CPU each and a label each (``head_node``, ``second_node``);
the second also claims one GPU (Ray takes a node's word for it), so GPU placement is tested
on a machine without one.
It is stopped by ending the processes it started (never ``ray stop``, which would end every
Ray on the machine). Without Ray the tests skip, except under CI, where they fail.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from pollinate import (
    ArrayRecord,
    ConfigRecord,
    Context,
    FedAvg,
    Message,
    RecordDict,
    ServerApp,
    run_simulation,
)
from pollinate.errors import AppError, ConfigError
from pollinate.message import ErrorCode, MessageType
from pollinate.simulation import ClientAppSource, RayBackend, _process
from pollinate.simulation._backend import Task
from pollinate.simulation._ray import _batch_size, _innermost

from .._shared import in_ci
from .fixture_apps import initial_arrays

try:
    import ray
except ImportError:
    if in_ci():
        pytest.fail("Ray is not installed; CI must install it (pip install '.[dev]')")
    pytest.skip("Ray is not installed (pip install 'pollinate[ray]')", allow_module_level=True)

RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # `ray`, whether or not it is on PATH
START_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """A head and a second node, each a ``ray start --block`` process group of ours."""

    def __init__(self) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="plray")  # short: Ray's socket paths are long
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        src = str(Path(__import__("pollinate").__file__).parents[1])
        path = os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])
        # No token authentication: a throwaway cluster on 127.0.0.1.
        self.env = {**os.environ, "PYTHONPATH": path, "RAY_AUTH_MODE": "disabled"}
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        head = ["--head", f"--port={self.port}", f"--ray-client-server-port={_free_port()}"]
        head += ["--include-dashboard=false", f"--dashboard-port={_free_port()}"]
        self._node("head", [*head, f"--temp-dir={self.temp_dir}"], {"head_node": 1})
        self._wait_for(lambda: _listening(self.port), "the head node's port")
        self._node("second", [f"--address={self.address}", "--num-gpus=1"], {"second_node": 1})
        self._wait_for(lambda: _alive_nodes(self.address, self.env) == 2, "two nodes")

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):  # its group may be gone already
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for process in self.processes:  # the groups' other processes write in temp_dir too
            _wait_gone(process.pid)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _node(self, name: str, args: list[str], resources: dict[str, int]) -> None:
        ports = [
            f"--{flag}={_free_port()}"
            for flag in (
                "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port",
                "runtime-env-agent-port",
                "metrics-export-port",
            )
        ]
        command = [
            *[*RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1"],
            *["--disable-usage-stats", f"--object-store-memory={100 * 2**20}", *ports, *args],
            *["--resources", json.dumps(resources)],
        ]
        log = Path(self.temp_dir) / f"{name}.log"
        with log.open("wb") as out:
            self.processes.append(
                subprocess.Popen(
                    command,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stop() ends it whole
                )
            )

    def _wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                logs = {p.name: p.read_text()[-2000:] for p in Path(self.temp_dir).glob("*.log")}
                raise RuntimeError(f"the test Ray cluster did not get {what}: {logs}")
            time.sleep(0.2)


def _wait_gone(group: int) -> None:
    """Wait until no process of process group ``group`` is left (or 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _alive_nodes(address: str, env: dict[str, str]) -> int:
    """How many nodes the cluster at ``address`` has, asked from a short-lived driver."""
    code = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    return int(out.stdout.strip() or 0)


@pytest.fixture(scope="module")
def cluster():
    started = Cluster()
    try:
        started.start()
        yield started
    finally:
        started.stop()


def fedavg(num_rounds=2, fraction_train=1.0, timeout_s=None, train_config=None, arrays=None):
    """FedAvg over ``arrays`` (the fixture model by default)."""
    app = ServerApp()

    @app.main()
    def main(grid, context):
        strategy = FedAvg(fraction_train=fraction_train, fraction_evaluate=0.0, min_train_nodes=1)
        return strategy.start(
            grid,
            initial_arrays() if arrays is None else arrays,
            num_rounds=num_rounds,
            timeout_s=timeout_s,
            train_config=train_config or {},
        )

    return app


def on_cluster(cluster, server, app, num_nodes, apps_dir, **options):
    return run_simulation(
        server,
        app,
        num_nodes=num_nodes,
        app_dir=apps_dir,
        backend="ray",
        backend_options={"ray_address": cluster.address, **options},
        verbose=False,
    )


def test_ray_equals_inline_bit_for_bit_and_runs_on_both_nodes(
    cluster, apps_dir, tmp_path, monkeypatch
):
    config = {"where-dir": str(tmp_path), "delay": 0.02}
    model = ArrayRecord({"w": np.zeros((160, 128), np.float32), "b": np.zeros(3, np.float32)})
    inline = run_simulation(
        fedavg(3, 0.5, train_config=config, arrays=model),
        "fixture_apps:noisy",
        num_nodes=6,
        verbose=False,
        app_dir=apps_dir,
    )
    real_put, put = ray.put, []

    def counting_put(value):
        put.append(value.nbytes)
        return real_put(value)

    monkeypatch.setattr(ray, "put", counting_put)
    server = fedavg(3, 0.5, train_config=config, arrays=model)
    on_ray = on_cluster(cluster, server, "ray_apps:where", 6, apps_dir)
    assert len(put) == 3 and min(put) > 160 * 128 * 4  # the 80 KB model: once a round
    for name in inline.arrays:
        assert inline.arrays[name].numpy().tobytes() == on_ray.arrays[name].numpy().tobytes()
    assert [r.train.metrics for r in inline.rounds] == [r.train.metrics for r in on_ray.rounds]
    names = sorted(p.name for p in tmp_path.iterdir())
    seen = [name.rsplit("-", 1)[0] for name in names if not name.startswith("warmed-")]
    assert seen == ["head_node-cpu", "second_node-cpu"]
    # each actor warmed up once, on its device (the same WARMED_ON list holds one entry)
    assert [n for n in names if n.startswith("warmed-")] == [
        "warmed-head_node-cpu",
        "warmed-second_node-cpu",
    ]
    assert not ray.is_initialized()  # the driver left the cluster


def test_actors_with_a_gpu_share_give_their_nodes_the_gpu_device(cluster, apps_dir, tmp_path):
    config = {"where-dir": str(tmp_path)}
    result = on_cluster(
        cluster,
        fedavg(1, train_config=config),
        "ray_apps:where",
        4,
        apps_dir,
        num_cpus=0.5,
        num_gpus=0.5,  # two actors share the second node's GPU; the head has none
    )
    assert result.rounds[-1].train.num_ok == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "second_node-cuda:0-0",
        "warmed-second_node-cuda:0",  # the warm-up ran on the actor's GPU too
    ]


def test_an_actor_that_dies_mid_task_fails_its_node_and_is_replaced(cluster, apps_dir):
    result = on_cluster(cluster, fedavg(2), "fixture_apps:crashing", 4, apps_dir)
    assert [r.train.num_ok for r in result.rounds] == [3, 3]
    for server_round in result.rounds:
        (crashed,) = server_round.train.failures
        assert crashed.node_id == 2
        assert (
            "NODE_UNAVAILABLE" in crashed.reason
            and "Ray actor running node 2 died" in crashed.reason
        )


def train_tasks(num_nodes):
    """Train tasks for nodes 1..num_nodes, in that order, each with the fixture model."""
    content = RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": 1})})
    return [
        Task(
            Message.create(content, node, MessageType.TRAIN, run_id=1),
            Context(1, node, {}, {}, RecordDict()),
        )
        for node in range(1, num_nodes + 1)
    ]


def error_codes(cluster, apps_dir, spec, tasks, deadline=None):
    """Run ``tasks`` on the cluster's two actors: each result's error code (None: ok)."""
    backend = RayBackend(ray_address=cluster.address)
    backend.start(ClientAppSource(spec=spec, search_path=str(apps_dir)), len(tasks))
    try:
        results = sorted(backend.run(tasks, deadline), key=lambda result: result.index)
    finally:
        backend.close()
    assert [result.index for result in results] == list(range(len(tasks)))
    return [result.reply.error.code if result.reply.has_error else None for result in results]


def test_the_batch_of_an_actor_that_dies_runs_elsewhere(cluster, apps_dir):
    # 24 tasks on 2 actors go 3 to a call: node 2 kills the actor running nodes 1-3. Nodes 1-3
    # then run one to a call (node 1's reply may have been lost with the actor): node 2 kills
    # another actor and fails, nodes 1 and 3 are answered.
    assert _batch_size(24, 2) == 3
    codes = error_codes(cluster, apps_dir, "fixture_apps:crashing", train_tasks(24))
    assert codes == [None, ErrorCode.NODE_UNAVAILABLE] + [None] * 22


def test_at_the_deadline_the_rest_of_a_stalled_batch_times_out(cluster, apps_dir):
    # Nodes 1-3 go to one actor: node 2 stalls it, and node 3, queued behind node 2 in the
    # same call, times out with it; the other actor runs all the rest.
    deadline = time.monotonic() + 6.0
    codes = error_codes(cluster, apps_dir, "fixture_apps:stalling", train_tasks(24), deadline)
    assert codes == [None, ErrorCode.TIMEOUT, ErrorCode.TIMEOUT] + [None] * 21


def test_a_run_closed_early_keeps_its_actors_and_later_runs_get_their_own_replies(
    cluster, apps_dir
):
    backend = RayBackend(ray_address=cluster.address)
    backend.start(ClientAppSource(spec="fixture_apps:noisy", search_path=str(apps_dir)), 2)
    try:
        actors = list(backend._actors)
        for _ in range(2):
            results = backend.run(train_tasks(12), None)
            next(results)
            results.close()  # over-selection: the rest are not wanted
            assert backend._actors == actors
        results = sorted(backend.run(train_tasks(4), None), key=lambda r: r.index)
        assert [r.reply.content.metrics()["num-examples"] for r in results] == [11, 12, 13, 14]
        assert backend._actors == actors
    finally:
        backend.close()


def test_a_run_closed_early_replaces_an_actor_busy_after_the_grace_not_the_deadline(
    cluster, apps_dir, monkeypatch
):
    # Node 1 goes to the first actor, node 2 (a 60 s stall) to the second. The deadline is
    # an hour away: a drain bounded by it would wait the stall out and keep the actor.
    monkeypatch.setattr(_process, "DRAIN_GRACE_S", 5.0)
    backend = RayBackend(ray_address=cluster.address)
    backend.start(ClientAppSource(spec="fixture_apps:stalling", search_path=str(apps_dir)), 2)
    try:
        actors = list(backend._actors)
        results = backend.run(train_tasks(2), time.monotonic() + 3600.0)
        assert next(results).index == 0
        results.close()
        assert backend._actors[0] is actors[0] and backend._actors[1] is not actors[1]
    finally:
        backend.close()


def test_batches_shrink_to_one_task_as_the_queue_empties():
    assert [_batch_size(queued, 2) for queued in (100, 40, 24, 9, 8, 1)] == [8, 5, 3, 2, 1, 1]


def test_a_client_apps_error_reaches_the_server_with_its_message(cluster, apps_dir):
    result = on_cluster(cluster, fedavg(1), "ray_apps:raising", 3, apps_dir)
    ((failure,),) = [r.train.failures for r in result.rounds if r.train]
    assert failure.node_id == 2 and "CLIENT_APP_RAISED" in failure.reason
    assert "ValueError: node 2 cannot train today" in failure.reason


def test_a_stalled_node_times_out_and_holds_up_no_other(cluster, apps_dir):
    # Four tasks on two actors: stalled node 2 holds one actor, the other runs the rest, so
    # only node 2 times out; its actor is replaced and the next round runs as well.
    result = on_cluster(cluster, fedavg(2, timeout_s=6.0), "fixture_apps:stalling", 4, apps_dir)
    outcomes = [
        (r.train.num_ok, [(f.node_id, "TIMEOUT" in f.reason) for f in r.train.failures])
        for r in result.rounds
    ]
    assert outcomes == [(3, [(2, True)]), (3, [(2, True)])]


def test_a_local_ray_is_started_for_the_run_and_stopped(apps_dir):
    # In a process of its own, as `pollinate run` would be: a process that started a local
    # Ray keeps its token authentication, and then cannot join this module's cluster.
    code = "import json, ray_apps; print(json.dumps(ray_apps.run_on_local_ray()))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=apps_dir, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["ok"] == 2 and seen["initialized_after"] is False
    assert not _listening(int(seen["gcs"].rsplit(":", 1)[1]))  # that Ray is gone


def test_more_actors_than_the_cluster_has_room_for_is_a_clear_error(cluster, apps_dir):
    with pytest.raises(ConfigError, match="num-workers = 3 Ray actors of 1 CPU each do not fit"):
        on_cluster(cluster, fedavg(1), "fixture_apps:noisy", 4, apps_dir, num_actors=3)
    with pytest.raises(ConfigError, match="no node of the Ray cluster has 1 CPU and 2 GPUs"):
        on_cluster(cluster, fedavg(1), "fixture_apps:noisy", 4, apps_dir, num_gpus=2.0)
    assert not ray.is_initialized()


def test_an_address_nobody_answers_at_is_a_clear_error_at_once(apps_dir):
    backend = RayBackend(ray_address=f"127.0.0.1:{_free_port()}")
    with pytest.raises(ConfigError, match=r"nothing answers at ray-address = '127\.0\.0\.1:"):
        backend.start(ClientAppSource(spec="fixture_apps:noisy", search_path=str(apps_dir)))
    for malformed in ("head-node", "::bad::", "ray://host:port"):  # refused when built
        with pytest.raises(ConfigError, match='must be "" \\(a local Ray\\), "auto"'):
            RayBackend(ray_address=malformed)


def test_without_ray_the_backend_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'pollinate\[ray\]'"):
        RayBackend().start(ClientAppSource(spec="fixture_apps:noisy"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_cpus": 0}, "num-cpus must be above 0"),
        ({"num_cpus": float("nan")}, "num-cpus must be above 0, got nan"),
        ({"num_cpus": "2"}, "num-cpus must be a number, got '2'"),
        ({"num_gpus": -1}, "num-gpus must be 0 or more"),
        ({"num_gpus": float("nan")}, "num-gpus must be 0 or more GPUs per node, got nan"),
        ({"num_gpus": 1.5}, "above 1 a node holds whole GPUs; use 1 or 2"),
        ({"num_actors": 0}, "num-workers (Ray actors) must be at least 1"),
    ],
)
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(ConfigError) as err:
        RayBackend(**options)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("num_cpus", "num_gpus", "resources", "fits"),
    [
        (0.2, 0.0, {"CPU": 1.0}, 5),  # float // says 4
        (0.1, 0.0, {"CPU": 1.0}, 10),  # float // says 9
        (1.0, 0.2, {"CPU": 8.0, "GPU": 1.0}, 5),
        (1.0, 0.5, {"CPU": 8.0}, 0),  # no GPU on that node
        (2.0, 0.0, {"CPU": 3.0}, 1),
    ],
)
def test_a_nodes_room_counts_fractions_as_ray_does(num_cpus, num_gpus, resources, fits):
    assert RayBackend(num_cpus=num_cpus, num_gpus=num_gpus)._room(resources) == fits


def test_an_app_the_actors_cannot_load_is_one_clear_error(cluster, apps_dir):
    with pytest.raises(AppError, match=r"a Ray actor could not load the ClientApp: .*nosuch"):
        on_cluster(cluster, fedavg(1), "fixture_apps:nosuch", 2, apps_dir)
    assert not ray.is_initialized()


def test_an_actor_that_cannot_start_names_the_innermost_error():
    text = (
        "The actor died because of an error raised in its creation task, "
        "\x1b[36mray::_NodeActor.__init__()\x1b[39m (pid=1, ip=127.0.0.1)\n"
        "  File 'x.py', line 1\n"
        "RuntimeError: The actor with name _NodeActor failed to import on the worker.\n"
        "ModuleNotFoundError: No module named 'pollinate'\n"
    )
    assert _innermost(RuntimeError(text)) == "ModuleNotFoundError: No module named 'pollinate'"


def test_each_result_carries_the_compute_its_actor_measured(cluster, apps_dir):
    backend = RayBackend(ray_address=cluster.address)
    backend.start(ClientAppSource(spec="fixture_apps:noisy", search_path=str(apps_dir)), 4)
    try:
        results = list(backend.run(train_tasks(4), None))
    finally:
        backend.close()
    assert len(results) == 4
    assert all(isinstance(r.compute_s, float) and r.compute_s >= 0 for r in results)
