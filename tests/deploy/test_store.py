"""The link's database: rounds commit whole, and resuming checks what it resumes."""

import numpy as np
import pytest

from pollinate import ArrayRecord, Context, RecordDict, ServerApp
from pollinate.deploy._api import _run_in_store
from pollinate.deploy._store import Store
from pollinate.errors import AppError, ConfigError
from pollinate.server import Result, ResumePoint, RoundRecord, run_server_app


def test_a_round_and_its_model_come_back_and_only_the_latest_model_stays(tmp_path):
    store = Store(tmp_path / "link.db")
    store.start_run(1, "app", {"lr": 0.1}, None)
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
    store.start_run(7, "app", {"lr": 0.1}, None)
    with pytest.raises(ConfigError, match=r"another run config \(lr differ\)"):
        _run_in_store(store, "app", 8, {"lr": 0.2}, None)
    run_id, config, _, _ = _run_in_store(store, "app", 8, {"lr": 0.1}, None)
    assert run_id == 7 and config == {"lr": 0.1}
    store.close()


def test_a_server_app_that_cannot_resume_is_told_so():
    hand_loop = ServerApp()

    @hand_loop.main()
    def main(grid, context):
        return Result(ArrayRecord())

    point = ResumePoint(ArrayRecord(), (RoundRecord(1),), last_round=1)
    context = Context(1, 0, {}, {}, RecordDict())
    with pytest.raises(AppError, match=r"never called strategy\.start"):
        run_server_app(hand_loop, None, context, resume=point)
