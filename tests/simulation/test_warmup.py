"""A ClientApp's warm-up runs once in each process that runs nodes, before round 1."""

import pytest

from pollinate import ClientApp, Context, FedAvg, run_simulation
from pollinate.errors import AppError, ConfigError

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


@pytest.mark.parametrize("backend", ["inline", "process"])
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
