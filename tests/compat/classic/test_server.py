"""compat.flwr.server: ServerConfig, History, start_server's TLS mapping and refusals."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest

import pollinate.compat.flwr as fl
from pollinate.compat.flwr.common import logger as flwr_logger
from pollinate.compat.flwr.common._files import private_folder
from pollinate.compat.flwr.server import History, ServerConfig, history_from_result
from pollinate.compat.flwr.server.server_config import server_config
from pollinate.deploy import make_dev_certs
from pollinate.errors import ConfigError
from pollinate.records import ArrayRecord
from pollinate.server import PhaseResult, Result, RoundRecord

from .._threads import free_address, run_federation
from ._clients import Shift


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Each 'said once' warning may be said again in this test."""
    monkeypatch.setattr(flwr_logger, "_said", set())


def test_server_config_from_dataclass_dict_or_nothing():
    assert server_config({"num_rounds": 3}) == ServerConfig(num_rounds=3)
    assert server_config(None) == ServerConfig(num_rounds=1, round_timeout=None)
    assert server_config(ServerConfig(2, 5.0)).round_timeout == 5.0
    for bad, match in (
        (ServerConfig(0), "at least 1"),
        ({"rounds": 2}, "unknown keys"),
        (3, "dict"),
    ):
        with pytest.raises(ConfigError, match=match):
            server_config(bad)  # type: ignore[arg-type]


def test_history_from_result_maps_phases_and_keeps_round_0():
    result = Result(
        ArrayRecord(),
        [
            RoundRecord(0, server_metrics={"loss": 2.0, "accuracy": 0.1}),
            RoundRecord(
                1,
                train=PhaseResult({"fit_x": 1.0}, 2),
                evaluate=PhaseResult({"loss": 0.5, "accuracy": 0.7}, 2),
                server_metrics={"loss": 1.0, "accuracy": 0.6},
            ),
        ],
    )
    history = history_from_result(result)
    assert history.losses_distributed == [(1, 0.5)]
    assert history.metrics_distributed == {"accuracy": [(1, 0.7)]}
    assert history.metrics_distributed_fit == {"fit_x": [(1, 1.0)]}
    assert history.losses_centralized == [(0, 2.0), (1, 1.0)]
    assert history.metrics_centralized == {"accuracy": [(0, 0.1), (1, 0.6)]}


def test_history_prints_flowers_summary():
    history = History()
    history.add_loss_distributed(1, 0.5)
    history.add_loss_distributed(2, 0.25)
    history.add_metrics_distributed(1, {"accuracy": 0.9})
    assert repr(history) == (
        "History (loss, distributed):\n\tround 1: 0.5\n\tround 2: 0.25\n"
        "History (metrics, distributed, evaluate):\n{'accuracy': [(1, 0.9)]}"
    )
    assert repr(History()) == "History (empty)"


def test_custom_server_and_client_manager_are_refused():
    with pytest.raises(ConfigError, match="custom Flower Server"):
        fl.server.start_server(server=object())
    with pytest.raises(ConfigError, match="client_manager"):
        fl.server.start_server(client_manager=object())
    with pytest.raises(ConfigError, match="three bytes"):
        fl.server.start_server(certificates=("ca", "cert", "key"))  # type: ignore[arg-type]


def test_private_folder_is_owner_only_and_removed():
    with private_folder({"ca.pem": b"x"}) as folder:
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(folder / "ca.pem").st_mode) == 0o600
        assert (folder / "ca.pem").read_bytes() == b"x"
    assert not folder.exists()


def two_clients_run(address: str, client_kwargs: dict, **server_kwargs) -> History:
    return run_federation(
        lambda: fl.server.start_server(
            server_address=address, config={"num_rounds": 2}, **server_kwargs
        ),
        [
            lambda c=c: fl.client.start_numpy_client(
                server_address=address, client=Shift(c), **client_kwargs
            )
            for c in (0, 1)
        ],
    )


def test_certificates_as_bytes_give_tls_and_leave_no_files(tmp_path, caplog, fresh_warnings):
    certs = make_dev_certs(tmp_path / "certs")
    ca, cert, key = (p.read_bytes() for p in (certs.ca_cert, certs.server_cert, certs.server_key))
    before = set(Path(tempfile.gettempdir()).glob("pollinate-flwr-*"))
    with caplog.at_level("WARNING"):
        history = two_clients_run(
            free_address(), {"root_certificates": ca}, certificates=(ca, cert, key)
        )
    assert [r for r, _ in history.losses_distributed] == [1, 2]
    assert not [r for r in caplog.records if "plain text" in r.getMessage()]
    assert set(Path(tempfile.gettempdir()).glob("pollinate-flwr-*")) == before


def test_without_certificates_plain_text_is_said_once_per_call_naming_the_fix(
    caplog, fresh_warnings
):
    address = free_address()
    with caplog.at_level("WARNING"):
        history = two_clients_run(address, {})
    assert np.isfinite(history.losses_distributed[-1][1])
    plain = [r.getMessage() for r in caplog.records if "plain text" in r.getMessage()]
    server = [m for m in plain if "certificates=(ca_cert, server_cert, server_key)" in m]
    clients = [m for m in plain if "root_certificates=" in m]
    assert len(server) == 1 and address in server[0] and "read and change" in server[0]
    assert len(clients) == 2 and "impostor" in clients[0]
    assert len(plain) == 3  # pollinate's own link and node warnings are not repeated
