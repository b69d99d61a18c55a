import fcntl
import json

import numpy as np
import pytest

from pollinate import ArrayRecord, ClientApp, FedAvg, Grid, Result, ServerApp, run_simulation
from pollinate.errors import AppError, ConfigError
from pollinate.server import load_arrays
from pollinate.simulation import ClientAppSource, InlineBackend, SimulationGrid

from .fixture_apps import initial_arrays, noisy


def fedavg_app(num_rounds=3, delay=0.0, timeout_s=None, min_train_nodes=2, fraction_train=0.5):
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context) -> Result:
        strategy = FedAvg(
            fraction_train=fraction_train, fraction_evaluate=0.0, min_train_nodes=min_train_nodes
        )
        return strategy.start(
            grid,
            initial_arrays(),
            num_rounds=num_rounds,
            timeout_s=timeout_s,
            train_config={"delay": delay},
        )

    return app


def run_pooled(server, app_name, num_nodes, apps_dir, workers=2):
    """Run a fixture app on the process backend."""
    return run_simulation(
        server,
        f"fixture_apps:{app_name}",
        num_nodes=num_nodes,
        app_dir=apps_dir,
        backend="process",
        backend_options={"num_workers": workers},
    )


def test_same_seed_same_model_bit_for_bit():
    first, second = (run_simulation(fedavg_app(), noisy, num_nodes=10) for _ in range(2))
    for name in first.arrays:
        assert first.arrays[name].numpy().tobytes() == second.arrays[name].numpy().tobytes()


def test_node_state_persists_across_rounds():
    result = run_simulation(fedavg_app(num_rounds=3), noisy, num_nodes=2)
    assert [r.train.metrics["rounds-seen"] for r in result.rounds] == [1.0, 2.0, 3.0]


def test_process_backend_equals_inline_bit_for_bit_despite_arrival_order(apps_dir):
    inline = run_simulation(
        fedavg_app(delay=0.05), "fixture_apps:noisy", num_nodes=6, app_dir=apps_dir
    )
    pooled = run_pooled(fedavg_app(delay=0.05), "noisy", 6, apps_dir, workers=3)
    for name in inline.arrays:
        assert inline.arrays[name].numpy().tobytes() == pooled.arrays[name].numpy().tobytes()
    assert [r.train.metrics for r in inline.rounds] == [r.train.metrics for r in pooled.rounds]


def test_process_backend_survives_a_crashing_node(apps_dir):
    result = run_pooled(
        fedavg_app(num_rounds=2, min_train_nodes=1, fraction_train=1.0),
        "crashing",
        4,
        apps_dir,
        workers=2,
    )
    assert [r.train.num_ok for r in result.rounds] == [3, 3]
    for server_round in result.rounds:
        (crashed,) = server_round.train.failures
        assert crashed.node_id == 2 and "died (exit code 3)" in crashed.reason


def test_process_backend_times_out_a_stalled_node_and_goes_on(apps_dir):
    result = run_pooled(
        fedavg_app(num_rounds=2, timeout_s=3.0, min_train_nodes=1),
        "stalling",
        4,
        apps_dir,
        workers=2,
    )
    outcomes = [
        (r.train.num_ok, [(f.node_id, "TIMEOUT" in f.reason) for f in r.train.failures])
        for r in result.rounds
    ]
    assert outcomes == [(1, [(2, True)]), (2, [])]  # the seeded sample has node 2 in round 1


def test_process_backend_replaces_a_worker_that_died_while_idle(apps_dir, tmp_path):
    exit_lock, go_lock = tmp_path / "exit.lock", tmp_path / "go.lock"
    locks = {"exit-lock": str(exit_lock), "go-lock": str(go_lock)}
    server = ServerApp()

    @server.main()
    def main(grid, context):
        strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=1)
        with go_lock.open("w") as go:
            fcntl.flock(go, fcntl.LOCK_EX)
            first = strategy.start(grid, initial_arrays(), num_rounds=1, train_config=locks)
        with exit_lock.open() as gone:  # released: node 1's worker has exited, idle
            fcntl.flock(gone, fcntl.LOCK_EX)
        return strategy.start(grid, first.arrays, num_rounds=2, train_config=locks)

    result = run_pooled(server, "dies_when_idle", 2, apps_dir, workers=2)
    assert [(r.train.num_ok, r.train.failures) for r in result.rounds] == [(2, ()), (2, ())]


@pytest.mark.parametrize("backend", ["inline", "process"])
def test_an_int_metric_beyond_64_bits_fails_its_node_alike_on_every_backend(apps_dir, backend):
    result = run_simulation(
        fedavg_app(num_rounds=1, min_train_nodes=1, fraction_train=1.0),
        "fixture_apps:huge_metric",
        num_nodes=3,
        app_dir=apps_dir,
        backend=backend,
        backend_options={"num_workers": 2} if backend == "process" else None,
    )
    (failure,) = result.rounds[0].train.failures
    assert failure.node_id == 2 and "CLIENT_APP_RAISED" in failure.reason
    assert "MetricRecord['big'] = 1180591620717411303424 does not fit in 64 bits" in failure.reason


def test_nodes_cannot_change_the_shared_run_config():
    app = ClientApp()

    @app.train()
    def greedy(msg, context):
        context.run_config["lr"] = 10.0
        return noisy(msg, context)

    result = run_simulation(
        fedavg_app(num_rounds=1, min_train_nodes=0, fraction_train=1.0),
        app,
        num_nodes=2,
        run_config={"lr": 0.1},
    )
    assert all(
        "does not support item assignment" in f.reason for f in result.rounds[0].train.failures
    )


def test_run_config_values_are_checked_up_front():
    with pytest.raises(ConfigError, match=r"run_config\['layers'\] is list"):
        run_simulation(fedavg_app(), noisy, num_nodes=2, run_config={"layers": [64, 64]})


def test_a_second_run_into_the_same_folder_starts_a_fresh_history(tmp_path):
    for _ in range(2):
        run_simulation(fedavg_app(num_rounds=2), noisy, num_nodes=2, out_dir=tmp_path)
    rounds = [
        json.loads(line)["round"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    assert rounds == [1, 2]


class FakeClock:
    """``time.monotonic`` for the inline backend and the grid: it moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_inline_times_out_only_the_node_that_overruns_the_rounds_timeout(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("pollinate.simulation._inline.time", clock)
    monkeypatch.setattr("pollinate.simulation._grid.time", clock)
    app = ClientApp()

    @app.train()
    def hangs_on_node_2(msg, context):
        clock.now += 50.0 if context.node_id == 2 else 5.0  # the timeout is 30 s
        return noisy(msg, context)

    server = fedavg_app(num_rounds=2, timeout_s=30.0, min_train_nodes=3, fraction_train=1.0)
    rounds = run_simulation(server, app, num_nodes=4).rounds
    for phase in (r.train for r in rounds):  # 3 + 50 + 5 + 5 s: each node has its own 30 s
        assert phase.num_ok == 3
        assert [(f.node_id, "TIMEOUT" in f.reason) for f in phase.failures] == [(2, True)]


def test_a_hundred_thousand_nodes_cost_only_what_is_sampled():
    backend = InlineBackend()
    backend.start(ClientAppSource(app=noisy))
    grid = SimulationGrid(backend, 100_000, run_id=1, run_config={})
    strategy = FedAvg(fraction_train=0.0001, fraction_evaluate=0.0)
    result = strategy.start(grid, initial_arrays(), num_rounds=2)
    assert [r.train.num_ok for r in result.rounds] == [10, 10]
    touched = [n for n in grid.node_ids() if grid.node_state(n) is not None]
    assert 10 <= len(touched) <= 20


def test_out_dir_gets_metrics_lines_and_the_final_model(tmp_path):
    result = run_simulation(fedavg_app(num_rounds=2), noisy, num_nodes=4, out_dir=tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["round"] for line in lines] == [1, 2]
    assert lines[0]["train"]["ok"] == 2
    saved = load_arrays(tmp_path / "model.npz")
    assert saved == result.arrays


def test_the_global_model_is_checkpointed_after_every_round(tmp_path):
    result = run_simulation(fedavg_app(num_rounds=3), noisy, num_nodes=4, out_dir=tmp_path)
    saved = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert saved == [f"round-{r:04d}.npz" for r in range(4)]
    assert load_arrays(tmp_path / "checkpoints" / "round-0003.npz") == result.arrays
    assert load_arrays(tmp_path / "checkpoints" / "round-0001.npz") != result.arrays


def test_checkpoints_can_be_turned_off(tmp_path):
    run_simulation(
        fedavg_app(num_rounds=2), noisy, num_nodes=4, out_dir=tmp_path, checkpoints=False
    )
    assert not (tmp_path / "checkpoints").exists()
    assert (tmp_path / "model.npz").exists()


def test_classic_style_gets_initial_parameters_from_a_node():
    from pollinate import NumPyClient

    class Client(NumPyClient):
        def get_parameters(self, config):
            return [np.full(2, 5.0, np.float32)]

        def fit(self, parameters, config):
            return [parameters[0] + 1], 4, {}

    result = run_simulation(
        client_fn=lambda context: Client(),
        strategy=FedAvg(fraction_evaluate=0.0),
        num_rounds=2,
        num_nodes=3,
    )
    np.testing.assert_array_equal(result.arrays["0"].numpy(), [7.0, 7.0])


def test_a_script_sets_the_model_and_round_config_on_the_strategy():
    from pollinate import NumPyClient

    class Client(NumPyClient):
        def get_parameters(self, config):
            raise AssertionError("the strategy has the initial model: no node is asked")

        def fit(self, parameters, config):
            return [parameters[0] + config["step"]], 4, {}

    strategy = FedAvg(
        fraction_evaluate=0.0,
        initial_arrays=ArrayRecord({"w": np.zeros(2, np.float32)}),
        train_config=lambda server_round: {"step": float(server_round)},
    )
    result = run_simulation(
        client_fn=lambda context: Client(), strategy=strategy, num_rounds=3, num_nodes=3
    )
    np.testing.assert_array_equal(result.arrays["w"].numpy(), [6.0, 6.0])  # 1 + 2 + 3


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_nodes": 0}, ConfigError, "num-nodes must be between 1"),
        ({"num_nodes": 3, "backend": "gpu-magic"}, ConfigError, "unknown backend 'gpu-magic'"),
        ({"num_nodes": 3, "client_fn": lambda c: None}, ConfigError, "exactly one of client_app"),
        ({"num_nodes": 3, "strategy": FedAvg()}, ConfigError, "not both"),
    ],
)
def test_bad_arguments_get_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        run_simulation(fedavg_app(), noisy, **kwargs)


def test_process_backend_needs_an_app_it_can_send():
    app = ClientApp()
    app.train()(lambda msg, context: msg)  # a lambda cannot be sent to a worker
    with pytest.raises(AppError, match="Define the ClientApp"):
        run_simulation(fedavg_app(), app, num_nodes=2, backend="process")


def test_server_app_without_result_is_a_clear_error():
    app = ServerApp()
    app.main()(lambda grid, context: None)
    with pytest.raises(AppError, match="finished without a result"):
        run_simulation(app, noisy, num_nodes=2)


def test_process_backend_starts_no_more_workers_than_nodes(apps_dir):
    from pollinate.simulation import ProcessBackend

    backend = ProcessBackend(num_workers=8)
    source = ClientAppSource(spec="fixture_apps:noisy", search_path=str(apps_dir))
    backend.start(source, num_nodes=2)
    try:
        assert backend.worker_count == 2
    finally:
        backend.close()


def test_replies_held_for_a_custom_aggregation_are_not_changed_by_later_nodes():
    """Clients sharing one model object (a module-level net): each reply is that model's
    memory, which the next client trains. A strategy that reads the replies as a list must
    still average what each client returned, as the streamed default does."""
    from pollinate import NumPyClient

    shared = np.zeros(2, np.float32)

    class Client(NumPyClient):
        def fit(self, parameters, config):
            shared[:] = parameters[0] + self.context.node_config["partition-id"] + 1
            return [shared], 1, {}

    class ListReading(FedAvg):
        def aggregate_train(self, server_round, arrays, replies, state):
            assert isinstance(replies, list)
            return super().aggregate_train(server_round, arrays, replies, state)

    for strategy in (FedAvg(fraction_evaluate=0.0), ListReading(fraction_evaluate=0.0)):
        result = run_simulation(
            client_fn=lambda context: Client(),
            strategy=strategy,
            initial_arrays=ArrayRecord({"w": np.zeros(2, np.float32)}),
            num_rounds=1,
            num_nodes=3,
            verbose=False,
        )
        np.testing.assert_array_equal(result.arrays["w"].numpy(), [2.0, 2.0])  # mean of 1, 2, 3
