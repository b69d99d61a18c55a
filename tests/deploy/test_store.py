"""The link's database: rounds commit whole, and resuming checks what it resumes."""

import numpy as np
import pytest

from pollinate import ArrayRecord, Context, RecordDict, ServerApp
from pollinate.deploy._link import Link
from pollinate.deploy._runs import Runs
from pollinate.deploy._store import RunRow, Store, StoreRecorder
from pollinate.errors import AppError, ConfigError
from pollinate.server import Result, ResumePoint, RoundRecord, run_server_app


def test_a_round_and_its_model_come_back_and_only_the_latest_model_stays(tmp_path):
    store = Store(tmp_path / "link.db")
    store.save_run(RunRow(1, "app", {"lr": 0.1}, None, status="running"))
    for server_round in range(3):
        arrays = ArrayRecord({"w": np.full(4, float(server_round))})
        record = RoundRecord(server_round) if server_round else None
        store.save_round(1, server_round, record, arrays)
    point = store.resume_point(1)
    assert point.last_round == 2 and [r.server_round for r in point.rounds] == [1, 2]
    np.testing.assert_array_equal(point.arrays["w"].numpy(), np.full(4, 2.0))
    assert [p.name for p in (tmp_path / "link.db.models" / "1").iterdir()] == ["round-0002.npz"]
    store.close()


def test_resuming_with_another_run_config_is_refused(tmp_path):
    store = Store(tmp_path / "link.db")
    store.save_run(RunRow(7, "app", {"lr": 0.1}, None, status="running"))
    runs = Runs(Link(credentials=None), None, store)
    assert runs.row(7).status == "interrupted"  # its ServerApp was in a process now gone
    app = ServerApp()
    with pytest.raises(ConfigError, match=r"another run config \(lr differ\)"):
        runs.submit("app", {"lr": 0.2}, server_app=app, resume=True)
    assert runs.submit("app", {"lr": 0.1}, server_app=app, resume=True) == 7
    assert runs.row(7).status == "queued"
    runs.close()
    store.close()


def test_runs_and_their_status_survive_a_new_store_and_an_old_schema_gains_columns(tmp_path):
    import sqlite3

    old = sqlite3.connect(tmp_path / "link.db")
    old.execute(
        "CREATE TABLE runs (run_id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "run_config TEXT NOT NULL, out_dir TEXT, status TEXT NOT NULL)"
    )
    old.execute("INSERT INTO runs VALUES (3, 'old', '{}', NULL, 'finished')")
    old.commit()
    old.close()
    store = Store(tmp_path / "link.db")
    store.save_run(RunRow(5, "new", {"x": 1}, "/tmp/r", status="failed", error="boom"))
    store.close()
    rows = Store(tmp_path / "link.db").runs()
    assert [(r.run_id, r.status, r.error) for r in rows] == [
        (3, "finished", None),
        (5, "failed", "boom"),
    ]


def test_a_server_app_that_cannot_resume_is_told_so():
    hand_loop = ServerApp()

    @hand_loop.main()
    def main(grid, context):
        return Result(ArrayRecord())

    point = ResumePoint(ArrayRecord(), (RoundRecord(1),), last_round=1)
    context = Context(1, 0, {}, {}, RecordDict())
    with pytest.raises(AppError, match=r"never called strategy\.start"):
        run_server_app(hand_loop, None, context, resume=point)


def _nonlinear_app():
    """Nodes move the model toward node-specific points: FedAdam's moments matter."""
    from pollinate import ClientApp, MetricRecord

    app = ClientApp()

    @app.train()
    def train(msg, context):
        target = float(context.node_id)
        new = {k: a.numpy() + 0.3 * (target - a.numpy()) for k, a in msg.content.arrays().items()}
        metrics = MetricRecord({"num-examples": 1 + context.node_id})
        return msg.reply(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}))

    return app


def _fedadam_run(rounds, grid, out_store=None, run_id=1, resume=None):
    from pollinate.strategy import FedAdam

    app = ServerApp()

    @app.main()
    def main(grid, context):
        strategy = FedAdam(eta=0.1, fraction_evaluate=0.0, min_train_nodes=3)
        return strategy.start(grid, ArrayRecord({"w": np.zeros(4)}), num_rounds=rounds)

    observers = [] if out_store is None else [StoreRecorder(out_store, run_id)]
    context = Context(run_id, 0, {}, {}, RecordDict())
    return run_server_app(app, grid, context, observers=observers, resume=resume)


def test_a_resumed_run_carries_on_with_the_strategys_state_as_if_never_cut(tmp_path):
    from pollinate.simulation import ClientAppSource, InlineBackend, SimulationGrid

    backend = InlineBackend()
    backend.start(ClientAppSource(app=_nonlinear_app()))
    try:
        grid = SimulationGrid(backend, 3, run_id=1, run_config={})
        whole = _fedadam_run(4, grid).arrays["w"].numpy()
        store = Store(tmp_path / "link.db")
        store.save_run(RunRow(1, "app", {}, None, status="running"))
        _fedadam_run(2, grid, out_store=store)  # the link died after round 2
        point = store.resume_point(1)
        assert point.last_round == 2 and set(point.strategy_state) == {"0:0/w", "0:1/w"}
        resumed = _fedadam_run(4, grid, resume=point).arrays["w"].numpy()
        np.testing.assert_array_equal(resumed, whole)
        store.close()
    finally:
        backend.close()


def test_round_0_is_committed_with_its_evaluation_or_when_round_1_starts(tmp_path):
    store = Store(tmp_path / "link.db")
    initial = ArrayRecord({"w": np.zeros(2)})
    evaluated, plain = StoreRecorder(store, 1), StoreRecorder(store, 2)
    for recorder in (evaluated, plain):
        recorder.on_arrays(0, initial)
    assert store.resume_point(1) is None  # killed during the evaluation: start afresh
    evaluated.on_round(RoundRecord(0, server_metrics={"loss": 1.0}))
    assert store.resume_point(1).rounds == (RoundRecord(0, server_metrics={"loss": 1.0}),)
    assert store.resume_point(2) is None
    plain.on_round_start(1, 3)
    assert store.resume_point(2).last_round == 0
    store.close()
