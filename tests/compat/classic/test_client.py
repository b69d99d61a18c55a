"""compat.flwr.client: Flower clients behind pollinate's NumPyClient adapter."""

from __future__ import annotations

import numpy as np
import pytest

import pollinate.compat.flwr as fl
from pollinate import Context, Message, RecordDict
from pollinate.compat.flwr.client import client_fn_handlers
from pollinate.compat.flwr.common import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from pollinate.errors import ConfigError
from pollinate.records import ArrayRecord, ConfigRecord

from ._clients import SEEN, Shift, shift_by_cid, shift_by_context, simulate


def test_legacy_client_fn_gets_string_ids_matching_partitions():
    simulate(shift_by_cid, fl.server.strategy.FedAvg(min_fit_clients=3), num_rounds=1)
    assert sorted(set(SEEN["cid"])) == ["0", "1", "2"]


def test_client_fn_with_context_gets_the_nodes_context_and_to_client_works():
    history = simulate(shift_by_context, fl.server.strategy.FedAvg(), num_rounds=1)
    partitions = {c.node_config["partition-id"] for c in SEEN["context"]}
    assert partitions == {0, 1, 2}
    assert len(history.losses_distributed) == 1


def test_arrays_handed_to_fit_and_evaluate_are_writable():
    simulate(shift_by_cid, fl.server.strategy.FedAvg())
    assert SEEN["writable"] and all(SEEN["writable"])


def test_handlers_cover_pollinate_message_types():
    handlers = client_fn_handlers(shift_by_cid)
    assert set(handlers) == {"train", "evaluate", "query.get-parameters"}
    content = RecordDict({"arrays": ArrayRecord.from_numpy([np.ones(3)]), "config": ConfigRecord()})
    message = Message.create(content, 1, "train")
    reply = handlers["train"](message, Context(1, 1, {"partition-id": 1}))
    assert np.array_equal(reply.content.arrays().to_numpy()[0], np.full(3, 2.0))
    assert reply.content.metrics()["num-examples"] == 20


class BytesClient(fl.client.Client):
    """A Flower Client (Ins/Res) that doubles the model; evaluates its sum as the loss."""

    def fit(self, ins: FitIns) -> FitRes:
        doubled = [2 * a for a in parameters_to_ndarrays(ins.parameters)]
        return FitRes(Status(Code.OK, ""), ndarrays_to_parameters(doubled), 5, {})

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        total = float(sum(a.sum() for a in parameters_to_ndarrays(ins.parameters)))
        return EvaluateRes(Status(Code.OK, ""), total, 5, {})


def test_a_flower_client_runs_with_ins_and_res():
    start = ndarrays_to_parameters([np.ones(2)])
    strategy = fl.server.strategy.FedAvg(initial_parameters=start)
    history = simulate(lambda cid: BytesClient(), strategy, num_rounds=2)
    assert history.losses_distributed == [(1, 4.0), (2, 8.0)]


def test_a_client_status_other_than_ok_fails_its_reply():
    class Refuses(BytesClient):
        def fit(self, ins: FitIns) -> FitRes:
            return FitRes(Status(Code.FIT_NOT_IMPLEMENTED, "no"), ins.parameters, 0, {})

    strategy = fl.server.strategy.FedAvg(initial_parameters=ndarrays_to_parameters([np.ones(2)]))
    history = simulate(lambda cid: Refuses(), strategy, num_rounds=1)
    assert history.losses_distributed == [(1, 2.0)]  # the model stayed as it was


def test_client_fn_returning_something_else_is_a_failed_reply_not_a_crash():
    strategy = fl.server.strategy.FedAvg(initial_parameters=ndarrays_to_parameters([np.ones(2)]))
    history = simulate(lambda cid: object(), strategy, num_rounds=1)
    assert history.losses_distributed == []


def test_start_client_needs_exactly_one_client_and_refuses_flower_auth_keys():
    with pytest.raises(ConfigError, match="exactly one"):
        fl.client.start_client(server_address="127.0.0.1:1")
    with pytest.raises(ConfigError, match="Ed25519"):
        fl.client.start_client(
            server_address="127.0.0.1:1", client=Shift(0).to_client(), authentication_keys=(1, 2)
        )
    with pytest.raises(ConfigError, match="NumPyClient"):
        fl.client.start_numpy_client(server_address="127.0.0.1:1", client=object())
