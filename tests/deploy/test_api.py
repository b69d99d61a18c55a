"""The classic script style over TLS: start_server with a strategy, start_client per node."""

import threading

import numpy as np
import pytest

import pollinate
from pollinate import FedAvg, NumPyClient
from pollinate.deploy import make_dev_certs
from pollinate.errors import ConfigError


class AddOne(NumPyClient):
    """A client whose training adds its partition id + 1 to every weight."""

    def __init__(self, partition: int) -> None:
        self.partition = partition

    def get_parameters(self, config):
        return [np.zeros(5), np.zeros((2, 3))]

    def fit(self, parameters, config):
        return [p + self.partition + 1 for p in parameters], 10, {}

    def evaluate(self, parameters, config):
        return 0.5, 10, {"accuracy": 0.75}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_dev_certs(tmp_path_factory.mktemp("certs"))


def test_server_and_clients_run_a_classic_federation_over_tls(certs, tmp_path):
    listening = threading.Event()
    port: list[int] = []
    outcome = {}

    def serve():
        outcome["result"] = pollinate.start_server(
            "127.0.0.1:0",
            strategy=FedAvg(min_available_nodes=3, fraction_evaluate=1.0),
            num_rounds=2,
            certs=certs.ca_cert.parent,
            min_nodes=3,
            wait_s=30,
            out_dir=tmp_path / "run",
            on_listening=lambda p: (port.append(p), listening.set()),
        )

    server = threading.Thread(target=serve)
    server.start()
    assert listening.wait(10)
    clients = [
        threading.Thread(
            target=pollinate.start_client,
            args=(f"localhost:{port[0]}", AddOne(partition)),
            kwargs={"root_cert": certs.ca_cert, "give_up_s": 10},
        )
        for partition in range(3)
    ]
    for client in clients:
        client.start()
    server.join(60)
    for client in clients:
        client.join(10)
        assert not client.is_alive()
    result = outcome["result"]
    # The initial weights come from one client (zeros); each round adds 2 on average.
    np.testing.assert_array_equal(result.arrays["0"].numpy(), np.full(5, 4.0))
    assert result.metrics("evaluate")[2]["accuracy"] == 0.75
    assert (tmp_path / "run" / "metrics.jsonl").is_file()


def test_tls_is_the_default_and_plain_text_must_be_asked_for(certs):
    with pytest.raises(ConfigError, match="insecure=True"):
        pollinate.start_server("127.0.0.1:0", strategy=FedAvg(), num_rounds=1)
    with pytest.raises(ConfigError, match="not both"):
        pollinate.start_client("127.0.0.1:1", AddOne(0), root_cert=certs.ca_cert, insecure=True)


def test_an_unreachable_server_gives_one_clear_error():
    with pytest.raises(ConfigError, match=r"no link at 127\.0\.0\.1:9 for 0\.3 s"):
        pollinate.start_client("127.0.0.1:9", AddOne(0), insecure=True, give_up_s=0.3)


def _serve_plainly(num_rounds, **kwargs):
    """start_server without TLS, with two start_client nodes; returns its Result."""
    listening = threading.Event()
    port: list[int] = []
    outcome = {}

    def serve():
        outcome["result"] = pollinate.start_server(
            "127.0.0.1:0",
            strategy=FedAvg(min_available_nodes=2, fraction_evaluate=1.0),
            num_rounds=num_rounds,
            insecure=True,
            min_nodes=2,
            wait_s=30,
            on_listening=lambda p: (port.append(p), listening.set()),
            **kwargs,
        )

    server = threading.Thread(target=serve)
    server.start()
    assert listening.wait(10)
    clients = [
        threading.Thread(
            target=pollinate.start_client,
            args=(f"127.0.0.1:{port[0]}", AddOne(partition)),
            kwargs={"insecure": True, "give_up_s": 10},
        )
        for partition in range(2)
    ]
    for client in clients:
        client.start()
    server.join(60)
    for client in clients:
        client.join(10)
    return outcome["result"]


def test_start_server_shows_each_round_and_a_summary(capsys, monkeypatch):
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    _serve_plainly(2)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["round 1/2", "round 2/2"]
    assert "train 2 ok, evaluate 2 ok; evaluate.accuracy=0.7500" in lines[1]
    assert lines[2].startswith("Finished 2 rounds in ")
    assert lines[-1].split()[:3] == ["model", "2", "arrays,"]


def test_start_server_is_quiet_when_told(capsys):
    _serve_plainly(1, verbose=False)
    assert capsys.readouterr().err == ""
