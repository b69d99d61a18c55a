"""TensorBoardTracker: event files TensorBoard itself reads back."""

import sys

import pytest

from pollinate.server import PhaseResult, RoundRecord
from pollinate.tracking import TensorBoardTracker

from .apps import ROUNDS, RUN_CONFIG, simulate
from .readers import tensorboard_run, tensorboard_scalars


def test_a_run_writes_every_round_as_scalars_tensorboard_reads_back(tmp_path, no_stray_threads):
    with TensorBoardTracker(tmp_path / "tb", RUN_CONFIG) as tracker:
        result = simulate([tracker])
    assert "tensorflow" not in sys.modules
    scalars = tensorboard_scalars(tmp_path / "tb")
    losses = {r: 1.0 / (r + 1) for r in range(ROUNDS + 1)}
    assert scalars["server/loss"] == pytest.approx(losses, rel=1e-6)  # kept as float32
    assert "server/diverged" not in scalars and "server/per-class" not in scalars
    assert scalars["train/replies-ok"] == {1: 2.0, 2: 2.0}
    assert scalars["train/replies-failed"] == {1: 1.0, 2: 1.0}
    assert set(scalars["train/num-examples"]) == {1, 2}
    walls = scalars["round/wall-time-s"]
    assert walls == pytest.approx({r.server_round: r.wall_time_s for r in result.rounds}, rel=1e-6)


def test_the_run_config_is_a_text_table_and_hparams(tmp_path):
    with TensorBoardTracker(tmp_path, RUN_CONFIG):
        pass
    run = tensorboard_run(tmp_path)
    assert "run-config" in run.PluginTagToContent("text")
    (table,) = run.Tensors("run-config")
    text = table.tensor_proto.string_val[0].decode()
    assert "| learning-rate | 0.1 |" in text and "| optimizer | sgd |" in text
    assert "_hparams_/session_start_info" in run.PluginTagToContent("hparams")


def test_a_resumed_run_continues_its_steps_and_drops_a_cut_short_round(tmp_path):
    def record(server_round, loss):
        return RoundRecord(server_round, PhaseResult({"loss": loss}, 2), wall_time_s=1.0)

    first = TensorBoardTracker(tmp_path)
    for server_round in (1, 2, 3):  # round 3's line was lost in a crash: the run resumes at 2
        first.on_round(record(server_round, float(server_round)))
    first.close(failed=True)
    again = TensorBoardTracker(tmp_path)
    again.on_resume(2)
    again.on_round(record(3, 30.0))
    again.close()
    assert tensorboard_scalars(tmp_path)["train/loss"] == {1: 1.0, 2: 2.0, 3: 30.0}


def test_a_value_beyond_float32_is_left_out_without_a_warning(tmp_path):
    tracker = TensorBoardTracker(tmp_path)
    tracker.on_round(RoundRecord(1, PhaseResult({"huge": 1e300, "fine": 2.0}, 1)))
    tracker.close()
    assert not tracker.disabled  # pytest turns the float32 overflow warning into an error
    scalars = tensorboard_scalars(tmp_path)
    assert "train/huge" not in scalars and scalars["train/fine"] == {1: 2.0}
