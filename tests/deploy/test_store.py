"""The link's database: rounds commit whole, and resuming checks what it resumes."""

import numpy as np
import pytest

from pollinate import ArrayRecord, Context, RecordDict, ServerApp
from pollinate.deploy._link import Link
from pollinate.deploy._runs import Runs
from pollinate.deploy._store import RunRow, Store
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
