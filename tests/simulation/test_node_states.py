"""Node state at scale: kept encoded, spilled past a budget, and only for nodes that ran."""

import gc

import numpy as np
import pytest

from pollinate import ArrayRecord, ClientApp, ConfigRecord, FedAvg, MetricRecord, RecordDict
from pollinate.message import ErrorCode
from pollinate.simulation import ClientAppSource, InlineBackend, SimulationGrid
from pollinate.simulation._states import NodeStates
from pollinate.strategy._fedavg import seeded_sample

from .fixture_apps import initial_arrays

counting = ClientApp()


@counting.train()
def _count_visits(msg, context):
    """Keep a small state: how often this node was sampled, and a tiny array."""
    visits = context.state.get("visits", MetricRecord({"n": 0}))
    visits["n"] += 1
    context.state["visits"] = visits
    context.state["last"] = ArrayRecord({"w": np.full(4, visits["n"], np.float32)})
    metrics = MetricRecord({"num-examples": 1})
    return msg.reply(RecordDict({"arrays": msg.content["arrays"], "metrics": metrics}))


def _record_dicts_alive() -> int:
    gc.collect()
    return sum(type(o) is RecordDict for o in gc.get_objects())  # type(): no proxy is asked


def _state(n: int) -> RecordDict:
    return RecordDict(
        {"m": MetricRecord({"n": n}), "a": ArrayRecord({"w": np.arange(8, dtype=np.float64)})}
    )


def test_a_node_that_never_ran_has_no_state_and_an_empty_state_costs_no_bytes():
    states = NodeStates()
    assert states.get(7) is None
    states.put(7, RecordDict())
    assert states.get(7) == RecordDict()
    assert (len(states), states.memory_bytes) == (1, 0)


def test_a_state_is_a_copy_of_what_was_put():
    states = NodeStates()
    state = _state(3)
    states.put(1, state)
    state["m"]["n"] = 99  # a later change is not kept
    got = states.get(1)
    assert got == _state(3)
    assert got is not states.get(1)


def test_states_past_the_budget_spill_to_disk_and_come_back():
    states = NodeStates(memory_bytes=2_000)
    for node in range(1, 101):
        states.put(node, _state(node))
    assert states.memory_bytes <= 2_000
    assert states.disk_count >= 80
    assert len(states) == 100
    assert all(states.get(node) == _state(node) for node in range(1, 101))
    states.put(1, _state(1000))  # a spilled node written again: one copy, the new one
    assert len(states) == 100
    assert states.get(1) == _state(1000)
    states.close()
    assert states.get(50) is None


def test_a_simulation_lists_no_node_ids_and_samples_as_a_list_would():
    backend = InlineBackend()
    grid = SimulationGrid(backend, 100_000, run_id=1, run_config={})
    ids = grid.wait_for_nodes(100, 0.0)
    assert isinstance(ids, range)
    listed = list(ids)
    for server_round in (1, 2, 3):
        assert seeded_sample(ids, 100, 7, server_round, 0) == seeded_sample(
            listed, 100, 7, server_round, 0
        )


@pytest.mark.parametrize("memory_bytes", [256 * 2**20, 20_000], ids=["in-memory", "spilled"])
def test_a_hundred_thousand_nodes_keep_their_state_compactly(memory_bytes):
    backend = InlineBackend()
    backend.start(ClientAppSource(app=counting))
    grid = SimulationGrid(
        backend, 100_000, run_id=1, run_config={}, state_memory_bytes=memory_bytes
    )
    strategy = FedAvg(fraction_train=0.001, fraction_evaluate=0.0, seed=3)
    rounds = 6
    alive_before = _record_dicts_alive()
    result = strategy.start(grid, initial_arrays(), num_rounds=rounds)
    assert [r.train.num_ok for r in result.rounds] == [100] * rounds
    expected: dict[int, int] = {}
    for server_round in range(1, rounds + 1):
        for node in seeded_sample(range(1, 100_001), 100, 3, server_round, 0):
            expected[node] = expected.get(node, 0) + 1
    assert any(n > 1 for n in expected.values()), "some node must be sampled twice"
    live = _record_dicts_alive() - alive_before
    assert live < 50, f"{live} more RecordDicts alive for {len(expected)} nodes with state"
    for node, visits in expected.items():
        state = grid.node_state(node)
        assert state is not None and state["visits"]["n"] == visits
        assert state["last"]["w"].numpy().tolist() == [visits] * 4
    assert grid.node_state(next(n for n in range(1, 100_001) if n not in expected)) is None
    grid.close()


unkeepable = ClientApp()


@unkeepable.train()
def _keep_a_lone_surrogate(msg, context):
    """A state the wire format cannot encode: a str with a lone surrogate has no UTF-8."""
    context.state["note"] = ConfigRecord({"text": "\ud800"})
    metrics = MetricRecord({"num-examples": 1})
    return msg.reply(RecordDict({"arrays": msg.content["arrays"], "metrics": metrics}))


def test_a_state_that_cannot_be_kept_fails_its_node_with_a_clear_reason():
    backend = InlineBackend()
    backend.start(ClientAppSource(app=unkeepable))
    grid = SimulationGrid(backend, 3, run_id=1, run_config={})
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1)
    arrays = initial_arrays()
    messages = strategy.configure_train(
        1, arrays, ConfigRecord(), grid, strategy.init_state(arrays)
    )
    sent = grid.send(messages)
    replies = list(grid.receive(sent))
    assert len(replies) == 3
    assert all(r.has_error and r.error.code == ErrorCode.INVALID_REPLY for r in replies)
    assert "state cannot be kept" in replies[0].error.reason
    assert grid.node_state(1) is None
