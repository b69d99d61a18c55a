"""MLflowTracker: a local file store MLflow's own client reads back."""

import logging
import os
import socket

import numpy as np
import pytest

from pollinate.errors import ConfigError
from pollinate.server import PhaseResult, RoundRecord, load_arrays
from pollinate.tracking import MLflowTracker

from .apps import ROUNDS, RUN_CONFIG, simulate


@pytest.fixture
def client(tmp_path):
    """MLflow's client on the test's file store (MLflow 3 opens one only when told it may)."""
    from mlflow import MlflowClient

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:  # MLflow keeps the store it builds for a URI: the opt-in is needed only here
        return MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
    finally:
        del os.environ["MLFLOW_ALLOW_FILE_STORE"]


def test_a_run_has_its_params_metrics_per_round_and_final_model(tmp_path, client):
    tracker = MLflowTracker(
        experiment="exp", run_name="r1", run_config=RUN_CONFIG, store_dir=tmp_path / "mlruns"
    )
    with tracker:
        result = simulate([tracker])
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # the opt-in was for its store only
    run = client.get_run(tracker.run_id)
    history = client.get_metric_history(tracker.run_id, "server/loss")
    failed = client.get_metric_history(tracker.run_id, "train/replies-failed")
    (tmp_path / "got").mkdir()
    folder = client.download_artifacts(tracker.run_id, "model.npz", str(tmp_path / "got"))
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "exp" and run.info.run_name == "r1"
    assert run.info.status == "FINISHED"
    assert run.data.params == {"learning-rate": "0.1", "optimizer": "sgd", "clip": "True"}
    assert {m.step: m.value for m in history} == {r: 1.0 / (r + 1) for r in range(ROUNDS + 1)}
    assert {m.step: m.value for m in failed} == {1: 1.0, 2: 1.0}
    assert "server/diverged" not in run.data.metrics  # NaN left out
    model = load_arrays(folder)
    for name, array in result.arrays.items():
        np.testing.assert_array_equal(model[name].numpy(), array.numpy())


def test_a_run_that_raises_ends_failed(tmp_path, client):
    with pytest.raises(RuntimeError), MLflowTracker(store_dir=tmp_path / "mlruns") as tracker:
        raise RuntimeError("the run broke")
    assert client.get_run(tracker.run_id).info.status == "FAILED"


def test_a_resumed_run_is_tagged_and_its_steps_go_on(tmp_path, client):
    tracker = MLflowTracker(store_dir=tmp_path / "mlruns")
    tracker.on_resume(4)
    tracker.on_round(RoundRecord(5, PhaseResult({"loss": 0.5}, 3)))
    tracker.close()
    run = client.get_run(tracker.run_id)
    assert run.data.tags["pollinate.resumed-after-round"] == "4"
    assert [m.step for m in client.get_metric_history(tracker.run_id, "train/loss")] == [5]


def test_a_failing_store_disables_the_tracker_with_one_warning(tmp_path, client, caplog):
    tracker = MLflowTracker(store_dir=tmp_path / "mlruns")
    calls = []

    def full_disk(*args, **kwargs):
        calls.append(args)
        raise OSError(28, "No space left on device")

    tracker._client.log_batch = full_disk
    with caplog.at_level(logging.WARNING, logger="pollinate.tracking"), tracker:
        result = simulate([tracker])  # the run goes on
    assert len(result.rounds) == ROUNDS + 1
    assert len(calls) == 1 and tracker.disabled
    (warning,) = [r for r in caplog.records if r.name == "pollinate.tracking"]
    assert "mlflow tracking stopped" in warning.getMessage()
    assert "No space left on device" in warning.getMessage()
    assert client.get_run(tracker.run_id).info.status == "FAILED"  # it misses rounds


def test_a_server_out_of_reach_at_the_start_is_one_clear_error(monkeypatch):
    # Without retries set, MLflow's defaults would take about 4 minutes to give up.
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    with socket.socket() as closed:  # a free port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(
        ConfigError, match=rf"mlflow could not start a run at http://127.0.0.1:{port}"
    ):
        MLflowTracker(f"http://127.0.0.1:{port}")
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # set for the start only


def test_names_mlflow_refuses_are_made_acceptable_not_dropped(tmp_path, client):
    tracker = MLflowTracker(
        run_config={"k" * 300: 1}, experiment="exp", store_dir=tmp_path / "mlruns"
    )
    names = ["a..b", "//x/", "y" * 300, "z" * 300 + "2"]
    tracker.on_round(RoundRecord(1, PhaseResult({n: 1.0 for n in names}, 2)))
    tracker.close()
    assert not tracker.disabled
    data = client.get_run(tracker.run_id).data
    logged = [key for key in data.metrics if key.startswith("train/")]
    assert len(logged) == len(names) + 2  # and replies-ok, replies-failed
    assert all(len(key) <= 250 for key in logged)
    assert "train/a__b" in logged and "train/x" in logged
    assert len(next(iter(data.params))) <= 250
    assert client.get_run(tracker.run_id).info.status == "FINISHED"


def test_mlflow_s_telemetry_is_off_unless_the_user_chose(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    MLflowTracker(store_dir=tmp_path / "mlruns").close()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")  # the user's choice stays
    MLflowTracker(store_dir=tmp_path / "mlruns").close()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"
