"""A ClientApp's warm-up runs once in each process that runs nodes, before round 1."""

import pytest

from pollinate import ClientApp, Context, FedAvg, run_simulation
from pollinate.errors import AppError, ConfigError
from pollinate.simulation import ClientAppSource, ProcessBackend
from pollinate.simulation._run import client_app_source

from .fixture_apps import initial_arrays


def _run(apps_dir, app_name, backend, num_nodes=4, num_rounds=2):
    return run_simulation(
        client_app=f"fixture_warm:{app_name}",
        strategy=FedAvg(fraction_train=1.0, fraction_evaluate=0.0),
        initial_arrays=initial_arrays(),
        num_rounds=num_rounds,
        num_nodes=num_nodes,
        app_dir=apps_dir,
        backend=backend,
        backend_options={"num_workers": 2} if backend == "process" else None,
        verbose=False,
    )


@pytest.mark.parametrize("backend", ["inline", "process", "vectorized"])
def test_each_process_warms_up_once_with_the_federations_size(apps_dir, backend):
    result = _run(apps_dir, "warm", backend)
    for server_round in result.rounds:
        # FedAvg averages: every node's process warmed up exactly once, seeing 4 partitions.
        assert server_round.train.metrics["warmups"] == 1
        assert server_round.train.metrics["saw"] == 4


@pytest.mark.parametrize("backend", ["inline", "process"])
def test_a_warmup_that_raises_stops_the_run_before_round_1_with_its_reason(apps_dir, backend):
    with pytest.raises(AppError, match=r"warm-up raised FileNotFoundError: no data here"):
        _run(apps_dir, "failing_warmup", backend)


def test_a_warmup_may_raise_a_clear_config_error_as_it_is():
    app = ClientApp()

    @app.warmup()
    def check(context: Context) -> None:
        raise ConfigError("run config 'data-dir' is empty")

    with pytest.raises(ConfigError, match="'data-dir' is empty"):
        app.warm_up(Context(1, 0))


def test_an_app_without_a_warmup_warms_up_as_a_no_op():
    ClientApp().warm_up(Context(1, 0))


def test_start_after_launch_waits_for_the_launched_workers(apps_dir):
    source = ClientAppSource(spec="fixture_warm:warm", search_path=str(apps_dir))
    backend = ProcessBackend(num_workers=2)
    backend.launch(source, num_nodes=4)
    launched = [worker.process.pid for worker in backend._workers]
    try:
        backend.start(source, num_nodes=4)
        assert [worker.process.pid for worker in backend._workers] == launched
        other = ClientAppSource(spec="fixture_apps:noisy", search_path=str(apps_dir))
        backend.start(other, num_nodes=4)  # another app: fresh workers, the others stopped
        assert not {worker.process.pid for worker in backend._workers} & set(launched)
    finally:
        backend.close()


def test_a_run_on_a_launched_backend_keeps_its_workers(apps_dir, monkeypatch):
    launches = []
    launch = ProcessBackend.launch
    monkeypatch.setattr(
        ProcessBackend, "launch", lambda self, *args: launches.append(1) or launch(self, *args)
    )
    source = client_app_source("fixture_warm:warm", None, apps_dir, 7, 4, {"lr": 0.1})
    backend = ProcessBackend(num_workers=2)
    backend.launch(source, 4)
    result = run_simulation(
        client_app="fixture_warm:warm",
        strategy=FedAvg(fraction_train=1.0, fraction_evaluate=0.0),
        initial_arrays=initial_arrays(),
        num_rounds=1,
        num_nodes=4,
        app_dir=apps_dir,
        backend=backend,
        run_id=7,
        run_config={"lr": 0.1},
        verbose=False,
    )
    assert launches == [1]  # run_simulation's start() found the same app: it only waited
    assert result.rounds[0].train.metrics["warmups"] == 1
