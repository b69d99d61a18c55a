"""compat.flwr.simulation: start_simulation's arguments on run_simulation."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pollinate.compat.flwr as fl
from pollinate.compat.flwr.common import logger as flwr_logger
from pollinate.errors import ConfigError

from ._clients import SEEN, shift_by_cid


def test_ray_arguments_pollinate_has_no_use_for_are_said_once_to_be_ignored(caplog, monkeypatch):
    monkeypatch.setattr(flwr_logger, "_said", set())
    with caplog.at_level("WARNING", logger="pollinate.flwr"):
        for _ in range(2):
            fl.simulation.start_simulation(
                client_fn=shift_by_cid,
                num_clients=2,
                client_resources={"num_cpus": 1, "num_gpus": 0.0, "memory": 2**30},
                ray_init_args={"include_dashboard": False},
                config={"num_rounds": 1},
            )
    ignored = [r.getMessage() for r in caplog.records if "is ignored" in r.getMessage()]
    assert len(ignored) == 3
    assert ignored[0].startswith("client_resources['num_cpus'] is ignored on the inline backend")
    assert ignored[1].startswith("client_resources['memory']")
    assert ignored[2].startswith("ray_init_args is ignored")


@pytest.mark.parametrize(
    ("backend", "resources", "ray_init_args", "options"),
    [
        ("inline", {"num_cpus": 2, "num_gpus": 0.0}, None, {}),
        ("inline", {"num_gpus": 1}, None, {"num_gpus": 1.0}),
        (
            "process",
            {"num_cpus": 2, "num_gpus": 0.25},
            None,
            {"num_gpus": 0.25, "threads_per_worker": 2},
        ),
        ("process", {"num_cpus": 0.5}, None, {"threads_per_worker": 1}),
        (
            "ray",
            {"num_cpus": 0.5, "num_gpus": 0.5},
            {"address": "auto"},
            {"num_gpus": 0.5, "num_cpus": 0.5, "ray_address": "auto"},
        ),
    ],
)
def test_client_resources_and_the_ray_address_become_the_backends_options(
    monkeypatch, backend, resources, ray_init_args, options
):
    seen = {}

    def run_simulation(*args, **kwargs):
        seen.update(backend=kwargs["backend"], options=kwargs["backend_options"])
        raise SystemExit

    monkeypatch.setattr(fl.simulation, "pollinate_run_simulation", run_simulation)
    with pytest.raises(SystemExit):
        fl.simulation.start_simulation(
            client_fn=shift_by_cid,
            num_clients=2,
            client_resources=resources,
            ray_init_args=ray_init_args,
            backend=backend,
            backend_options={"num_workers": 1} if backend == "process" else None,
        )
    expected = {**options, **({"num_workers": 1} if backend == "process" else {})}
    assert seen == {"backend": backend, "options": expected}


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"num_gpus": "a"}, "client_resources['num_gpus'] must be a number, got 'a'"),
        ({"num_cpus": "x"}, "client_resources['num_cpus'] must be a number, got 'x'"),
        ({"num_cpus": -1}, "client_resources['num_cpus'] must be 0 or more, got -1"),
        ({"num_gpus": float("inf")}, "client_resources['num_gpus'] must be 0 or more, got inf"),
    ],
)
def test_bad_client_resources_are_one_clear_error(resources, message):
    with pytest.raises(ConfigError) as err:
        fl.simulation.start_simulation(
            client_fn=shift_by_cid, num_clients=2, client_resources=resources, backend="process"
        )
    assert str(err.value) == message


def test_a_process_simulation_runs_with_flowers_client_resources():
    history = fl.simulation.start_simulation(
        client_fn=shift_by_cid,
        num_clients=2,
        client_resources={"num_cpus": 1, "num_gpus": 0.0},
        config={"num_rounds": 1},
        backend="process",
        backend_options={"num_workers": 1},
    )
    assert [r for r, _ in history.losses_distributed] == [1]


def test_clients_ids_name_the_clients():
    SEEN.clear()
    history = fl.simulation.start_simulation(
        client_fn=lambda cid: shift_by_cid(str(int(cid) - 100)),
        clients_ids=["100", "101", "102"],
        config=fl.server.ServerConfig(num_rounds=1),
    )
    assert sorted(set(SEEN["cid"])) == ["0", "1", "2"]
    assert len(history.losses_distributed) == 1


def test_default_strategy_is_fedavg_and_one_round():
    history = fl.simulation.start_simulation(client_fn=shift_by_cid, num_clients=2)
    assert [r for r, _ in history.losses_distributed] == [1]


def test_num_clients_or_clients_ids_exactly_one():
    with pytest.raises(ConfigError, match="exactly one"):
        fl.simulation.start_simulation(client_fn=shift_by_cid)
    with pytest.raises(ConfigError, match="exactly one"):
        fl.simulation.start_simulation(client_fn=shift_by_cid, num_clients=2, clients_ids=["a"])
    with pytest.raises(ConfigError, match="distinct"):
        fl.simulation.start_simulation(client_fn=shift_by_cid, clients_ids=["a", "a"])


def test_run_simulation_runs_the_apps_as_they_are():
    from pollinate.client import ClientApp
    from pollinate.compat.flwr.client._adapter import FlowerClientFn

    strategy = fl.server.strategy.FedAvg()
    client_app = ClientApp(client_fn=FlowerClientFn(shift_by_cid))
    SEEN.clear()
    assert fl.simulation.run_simulation(strategy.as_server_app(1), client_app, 3) is None
    assert sorted(set(SEEN["cid"])) == ["0", "1", "2"]
    with pytest.raises(ConfigError, match="ServerApp and a ClientApp"):
        fl.simulation.run_simulation(strategy, client_app, 3)  # type: ignore[arg-type]


class _TextMetrics(fl.client.NumPyClient):
    """Reports a JSON string, bytes and a bool, as Flower's step-by-step tutorial does."""

    def __init__(self, cid: str) -> None:
        self.cid = int(cid)

    def get_parameters(self, config):
        return [np.zeros(2)]

    def fit(self, parameters, config):
        metric = json.dumps({"b": self.cid, "mylist": [1, 2]})
        return parameters, 1, {"my_metric": metric, "raw": b"x", "ok": True, "loss": 0.5}

    def evaluate(self, parameters, config):
        return 0.1, 1, {"note": f"node {self.cid}", "accuracy": 1.0}


def test_text_metrics_reach_the_aggregation_functions():
    # Flower's metrics are Scalars: str, bytes and bool travel to the server's functions.
    seen = {}

    def handle_fit_metrics(metrics):
        seen["fit"] = sorted(metrics, key=lambda m: m[1]["my_metric"])
        return {"max_b": max(json.loads(m["my_metric"])["b"] for _, m in metrics)}

    def handle_evaluate_metrics(metrics):
        seen["evaluate"] = sorted(m["note"] for _, m in metrics)
        return {"accuracy": 1.0}

    strategy = fl.server.strategy.FedAvg(
        fit_metrics_aggregation_fn=handle_fit_metrics,
        evaluate_metrics_aggregation_fn=handle_evaluate_metrics,
    )
    history = fl.simulation.start_simulation(
        client_fn=_TextMetrics, num_clients=2, config={"num_rounds": 1}, strategy=strategy
    )
    assert history.metrics_distributed_fit["max_b"] == [(1, 1)]
    _, first = seen["fit"][0]
    assert (first["raw"], first["ok"], first["loss"]) == (b"x", True, 0.5)
    assert seen["evaluate"] == ["node 0", "node 1"]


def test_run_simulation_takes_the_gpu_share_from_backend_config(monkeypatch, caplog):
    monkeypatch.setattr(flwr_logger, "_said", set())
    seen = {}

    def run_simulation(*args, **kwargs):
        seen.update(kwargs)

    from pollinate import ClientApp, ServerApp

    monkeypatch.setattr(fl.simulation, "pollinate_run_simulation", run_simulation)
    with caplog.at_level("WARNING", logger="pollinate.flwr"):
        fl.simulation.run_simulation(
            ServerApp(),
            ClientApp(),
            num_supernodes=2,
            backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.5}},
        )
        assert seen["backend_options"] == {"num_gpus": 0.5}
        assert not [r for r in caplog.records if r.getMessage().startswith("backend_config")]
        fl.simulation.run_simulation(
            ServerApp(), ClientApp(), num_supernodes=2, backend_config={"init_args": {}}
        )
    assert seen["backend_options"] == {}
    assert [r.getMessage() for r in caplog.records][-1].startswith("backend_config is ignored")
