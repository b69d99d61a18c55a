"""Strategies on a population's clock, end to end: deadlines, over-selection, FedBuff."""

import numpy as np
import pytest

from pollinate import ArrayRecord, ClientApp, MetricRecord, RecordDict
from pollinate.simulation import Pareto, PopulationModel, run_simulation
from pollinate.strategy import FedAvg, FedBuff

SPEEDS = (4.0, 2.0, 1.0, 0.5)
"""Nodes 1..4 of the trace: 10 examples at 1 s each take 2.5, 5, 10 and 20 simulated seconds."""


def _train(msg, context):
    arrays = ArrayRecord({"w": np.full(3, float(context.node_id), np.float32)})
    metrics = MetricRecord({"num-examples": 10})
    return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))


@pytest.fixture
def four_speeds(tmp_path):
    """A trace of four always-available nodes with free links and the speeds of SPEEDS."""
    rows = [f"{node},{speed},inf,inf," for node, speed in enumerate(SPEEDS, start=1)]
    trace = tmp_path / "devices.csv"
    trace.write_text("node,speed,download_bps,upload_bps,availability\n" + "\n".join(rows))
    return PopulationModel.from_trace(trace, seconds_per_example=1.0)


def _run(strategy, population, num_rounds=1, num_nodes=4, **options):
    app = ClientApp()
    app.train()(_train)
    return run_simulation(
        client_app=app,
        num_nodes=num_nodes,
        strategy=strategy,
        num_rounds=num_rounds,
        initial_arrays=ArrayRecord({"w": np.zeros(3, np.float32)}),
        population=population,
        verbose=False,
        **options,
    )


def test_a_synchronous_round_waits_for_its_slowest_node(four_speeds):
    strategy = FedAvg(fraction_evaluate=0.0)
    result = _run(strategy, four_speeds, num_rounds=2, evaluate_fn=lambda r, a: {"r": r})
    assert [r.simulated_time_s for r in result.rounds] == [0.0, 20.0, 40.0]  # round 0 at 0
    assert np.allclose(result.arrays["w"].numpy(), 2.5)


def test_over_selection_ends_the_round_at_the_kth_reply(four_speeds):
    strategy = FedAvg(fraction_train=0.5, fraction_evaluate=0.0, over_selection=1.0)
    result = _run(strategy, four_speeds)
    (record,) = result.rounds
    assert record.simulated_time_s == 5.0  # nodes 1 and 2 answered first; 3 and 4 not awaited
    assert np.allclose(result.arrays["w"].numpy(), 1.5)
    assert record.train.metrics["selection.unused"] == 2


def test_a_round_deadline_is_simulated_seconds(four_speeds):
    strategy = FedAvg(fraction_evaluate=0.0, round_deadline_s=12.0)
    (record,) = _run(strategy, four_speeds).rounds
    assert record.simulated_time_s == 12.0
    assert record.train.num_ok == 3
    (late,) = record.train.failures
    assert late.node_id == 4 and "TIMEOUT" in late.reason


def test_fedbuff_lets_the_fast_nodes_make_the_versions(four_speeds):
    strategy = FedBuff(buffer_size=2, concurrency=4)
    result = _run(strategy, four_speeds, num_rounds=3)
    times = [r.simulated_time_s for r in result.rounds]
    # replies at 2.5 (node 1), 5 (1, 2), 7.5 (1), 10 (1, 2, 3): versions at 5, 7.5 and 10
    assert times == [5.0, 7.5, 10.0]
    assert [r.train.metrics["fedbuff.staleness-max"] for r in result.rounds] == [0, 1, 2]


def test_an_asynchronous_run_on_a_seeded_population_is_reproducible():
    population = PopulationModel(
        speed=Pareto(median=1.0, alpha=1.5), dropout=0.2, seconds_per_example=0.01, seed=3
    )

    def one_run():
        strategy = FedBuff(buffer_size=3, concurrency=8, seed=1)
        return _run(strategy, population, num_rounds=6, num_nodes=30)

    first, second = one_run(), one_run()
    assert [r.to_json() | {"wall_time_s": 0} for r in first.rounds] == [
        r.to_json() | {"wall_time_s": 0} for r in second.rounds
    ]
    assert np.array_equal(first.arrays["w"].numpy(), second.arrays["w"].numpy())
    assert sum(r.train.num_failed for r in first.rounds) > 0  # dropouts happened, the same ones


def test_the_python_example_in_docs_heterogeneity_md_runs(monkeypatch, capsys):
    from pathlib import Path

    root = Path(__file__).parents[2]
    text = (root / "docs" / "heterogeneity.md").read_text()
    code = text.split("```python\n")[1].split("```")[0]
    assert "num_rounds=50" in code
    monkeypatch.chdir(root)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    exec(code.replace("num_rounds=50", "num_rounds=3"), {})
    simulated, accuracy = map(float, capsys.readouterr().out.split()[-2:])
    assert simulated > 0 and 0 <= accuracy <= 1


def test_a_hung_node_s_slot_is_freed_after_the_timeout_on_the_clock(tmp_path):
    from pollinate.simulation import ClientAppSource, InlineBackend, SimulationGrid
    from pollinate.strategy import constant

    # node 1 would take 1e10 simulated seconds; nodes 2 and 3 take 10 s a task
    rows = ["1,1e-9,inf,inf,", "2,1.0,inf,inf,", "3,1.0,inf,inf,"]
    trace = tmp_path / "hung.csv"
    trace.write_text("node,speed,download_bps,upload_bps,availability\n" + "\n".join(rows))
    population = PopulationModel.from_trace(trace, seconds_per_example=1.0).build(3)
    app = ClientApp()
    app.train()(_train)
    backend = InlineBackend()
    backend.start(ClientAppSource(app=app))
    grid = SimulationGrid(backend, 3, 1, {}, population=population)
    strategy = FedBuff(buffer_size=1, concurrency=3, staleness=constant())
    result = strategy.start(grid, ArrayRecord({"w": np.zeros(3, np.float32)}), 6, timeout_s=25)
    # versions at 10, 10, 20, 20; at 25 node 1's task is abandoned, a failure of version 5
    assert [r.simulated_time_s for r in result.rounds] == [10.0, 10.0, 20.0, 20.0, 30.0, 30.0]
    failures = [[(f.node_id, f.reason) for f in r.train.failures] for r in result.rounds]
    assert failures == [[], [], [], [], [(1, "no reply within 25 s")], []]


def test_a_population_s_dropouts_are_logged_quietly_but_kept_in_the_record(caplog):
    population = PopulationModel(dropout=0.5, seconds_per_example=1.0, seed=1)
    with caplog.at_level("INFO", logger="pollinate"):
        sync = _run(FedAvg(fraction_evaluate=0.0, min_train_nodes=1), population, num_rounds=3)
        buffered = _run(FedBuff(buffer_size=2, concurrency=4), population, num_rounds=3)
    dropped = [r for r in caplog.records if "dropped out" in r.getMessage()]
    assert dropped and all(r.levelname == "INFO" for r in dropped)
    failures = sum(r.train.num_failed for r in [*sync.rounds, *buffered.rounds] if r.train)
    assert failures >= len(dropped)  # each is in its round's record (5 a round logged)


def test_a_failure_the_population_did_not_make_still_warns(four_speeds, caplog):
    def broken(msg, context):
        raise RuntimeError("a bug in the ClientApp")

    app = ClientApp()
    app.train()(broken)
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=0)
    with caplog.at_level("INFO", logger="pollinate"):
        run_simulation(
            client_app=app,
            num_nodes=4,
            strategy=strategy,
            num_rounds=1,
            initial_arrays=ArrayRecord({"w": np.zeros(3, np.float32)}),
            population=four_speeds,
            verbose=False,
        )
    assert {r.levelname for r in caplog.records if "a bug in" in r.getMessage()} == {"WARNING"}


def test_fedbuff_says_when_the_federation_is_smaller_than_its_concurrency(four_speeds, caplog):
    with caplog.at_level("WARNING", logger="pollinate"):
        _run(FedBuff(buffer_size=2, concurrency=10), four_speeds, num_rounds=1)
    (warning,) = [r.getMessage() for r in caplog.records if "concurrency=10" in r.getMessage()]
    assert "only 4 nodes are available now" in warning
