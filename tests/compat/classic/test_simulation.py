"""compat.flwr.simulation: start_simulation's arguments on run_simulation."""

from __future__ import annotations

import pytest

import pollinate.compat.flwr as fl
from pollinate.compat.flwr.common import logger as flwr_logger
from pollinate.errors import ConfigError

from ._clients import SEEN, shift_by_cid


def test_ray_arguments_are_said_once_to_be_ignored(caplog, monkeypatch):
    monkeypatch.setattr(flwr_logger, "_said", set())
    with caplog.at_level("WARNING", logger="pollinate.flwr"):
        for _ in range(2):
            fl.simulation.start_simulation(
                client_fn=shift_by_cid,
                num_clients=2,
                client_resources={"num_cpus": 1, "num_gpus": 0.0},
                ray_init_args={"include_dashboard": False},
                config={"num_rounds": 1},
            )
    ignored = [r.getMessage() for r in caplog.records if "is ignored" in r.getMessage()]
    assert len(ignored) == 2
    assert ignored[0].startswith("client_resources") and ignored[1].startswith("ray_init_args")


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
