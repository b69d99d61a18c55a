"""Resuming restores one value (model, rounds, strategy state) and carries on bit for bit."""

import logging

import numpy as np
import pytest

from pollinate import ArrayRecord, ClientApp, Context, MetricRecord, RecordDict, ServerApp
from pollinate.errors import ConfigError
from pollinate.server import ResumePoint, RunObserver, run_server_app
from pollinate.simulation import ClientAppSource, InlineBackend, SimulationGrid
from pollinate.strategy import FedAdam, FedAvg, FedAvgM, Scaffold

CONTEXT = Context(1, 0, {}, {}, RecordDict())


def _client_app():
    """Nodes pull the model toward node-specific points (and send SCAFFOLD's change)."""
    app = ClientApp()

    @app.train()
    def train(msg, context):
        target = float(context.node_id)
        arrays = msg.content.arrays()
        new = {k: a.numpy() + 0.3 * (target - a.numpy()) for k, a in arrays.items()}
        change = {k: np.full(a.shape, 0.1 * target) for k, a in arrays.items()}
        return msg.reply(
            RecordDict(
                {
                    "arrays": ArrayRecord(new),
                    "metrics": MetricRecord({"num-examples": 1 + context.node_id}),
                    "scaffold.delta-c": ArrayRecord(change),
                }
            )
        )

    return app


@pytest.fixture
def grid():
    backend = InlineBackend()
    backend.start(ClientAppSource(app=_client_app()))
    yield SimulationGrid(backend, 3, run_id=1, run_config={})
    backend.close()


class _Recorder(RunObserver):
    """Keeps what a recorder (the link's database) would: each round, model and state."""

    def __init__(self):
        self.events, self.rounds, self.arrays, self.states = [], [], {}, {}

    def on_resume(self, last_round):
        self.events.append(("resume", last_round))

    def on_round_start(self, server_round, num_rounds):
        self.events.append(("start", server_round))

    def on_round(self, record):
        self.events.append(("round", record.server_round))
        self.rounds.append(record)

    def on_strategy_state(self, server_round, state):
        self.events.append(("state", server_round))
        self.states[server_round] = state

    def on_arrays(self, server_round, arrays):
        self.events.append(("arrays", server_round))
        self.arrays[server_round] = arrays

    def point(self, last_round, with_state=True):
        """The resume point after ``last_round``."""
        rounds = tuple(r for r in self.rounds if r.server_round <= last_round)
        state = self.states[last_round] if with_state else None
        return ResumePoint(self.arrays[last_round], rounds, last_round, state)


def _run(strategy, grid, rounds, resume=None, observers=()):
    app = ServerApp()

    @app.main()
    def main(grid, context):
        return strategy.start(grid, ArrayRecord({"w": np.zeros(4)}), num_rounds=rounds)

    return run_server_app(app, grid, CONTEXT, observers=observers, resume=resume)


def _fedadam():
    return FedAdam(eta=0.1, fraction_evaluate=0.0, min_train_nodes=3)


def _scaffold():
    return Scaffold(server_learning_rate=0.7, fraction_train=0.5, fraction_evaluate=0.0)


@pytest.mark.parametrize("make", [_fedadam, _scaffold], ids=["FedAdam", "Scaffold"])
def test_a_resumed_run_ends_bit_for_bit_where_the_whole_run_ends(grid, make):
    whole = _run(make(), grid, 4)
    recorder = _Recorder()
    _run(make(), grid, 2, observers=[recorder])  # the run is cut after round 2
    resumed = _run(make(), grid, 4, resume=recorder.point(2))
    assert resumed.arrays == whole.arrays
    assert resumed.strategy_state == whole.strategy_state and len(whole.strategy_state) > 0
    assert [r.server_round for r in resumed.rounds] == [1, 2, 3, 4]


def test_without_its_state_a_resumed_run_differs_and_says_so(grid, caplog):
    whole = _run(_fedadam(), grid, 4)
    recorder = _Recorder()
    _run(_fedadam(), grid, 2, observers=[recorder])
    with caplog.at_level(logging.WARNING, "pollinate.strategy"):
        resumed = _run(_fedadam(), grid, 4, resume=recorder.point(2, with_state=False))
    assert resumed.arrays != whole.arrays  # the moments matter: the test can tell
    assert "starts afresh from round 3" in caplog.text


def test_resumed_after_round_0_without_state_a_run_is_exact_and_says_nothing(grid, caplog):
    whole = _run(_fedadam(), grid, 2)
    recorder = _Recorder()
    _run(_fedadam(), grid, 1, observers=[recorder])  # round 0 is kept without a state
    with caplog.at_level(logging.WARNING, "pollinate.strategy"):
        resumed = _run(_fedadam(), grid, 2, resume=recorder.point(0, with_state=False))
    assert resumed.arrays == whole.arrays and "afresh" not in caplog.text


def test_a_round_reports_its_state_between_its_record_and_its_model(grid):
    recorder = _Recorder()
    _run(_fedadam(), grid, 1, observers=[recorder])
    assert recorder.events == [
        ("arrays", 0),
        ("start", 1),
        ("round", 1),
        ("state", 1),
        ("arrays", 1),
    ]


def test_a_stateless_strategy_reports_no_state(grid):
    recorder = _Recorder()
    result = _run(FedAvg(fraction_evaluate=0.0), grid, 2, observers=[recorder])
    assert not recorder.states and len(result.strategy_state) == 0


def test_a_resumed_run_tells_its_observers_where_it_carries_on(grid):
    recorder = _Recorder()
    _run(_fedadam(), grid, 2, observers=[recorder])
    again = _Recorder()
    _run(_fedadam(), grid, 3, resume=recorder.point(2), observers=[again])
    assert again.events[:2] == [("resume", 2), ("start", 3)]


def test_state_of_another_strategy_is_refused_naming_both(grid):
    recorder = _Recorder()
    _run(_fedadam(), grid, 2, observers=[recorder])
    momentum = FedAvgM(server_momentum=0.5, fraction_evaluate=0.0)
    with pytest.raises(
        ConfigError, match=r"kept strategy state .*'0:1/w'.* resume with the strategy"
    ):
        _run(momentum, grid, 3, resume=recorder.point(2))


def test_the_resume_point_is_taken_once_a_second_start_starts_afresh(grid):
    recorder = _Recorder()
    _run(_fedadam(), grid, 2, observers=[recorder])
    starts = []
    app = ServerApp()

    @app.main()
    def main(grid, context):
        first = _fedadam().start(grid, ArrayRecord({"w": np.zeros(4)}), num_rounds=3)
        starts.append([r.server_round for r in first.rounds])
        second = _fedadam().start(grid, ArrayRecord({"w": np.zeros(4)}), num_rounds=1)
        starts.append([r.server_round for r in second.rounds])
        return second

    run_server_app(app, grid, CONTEXT, resume=recorder.point(2))
    assert starts == [[1, 2, 3], [1]]


def test_a_bare_grid_reports_to_nobody_and_starts_afresh(grid):
    assert grid.resume_point is None
    result = _fedadam().start(grid, ArrayRecord({"w": np.zeros(4)}), num_rounds=1)
    assert [r.server_round for r in result.rounds] == [1]
