"""``pollinate run --track`` and the app's ``[tool.pollinate.app.track]`` table."""

import json
import os
from pathlib import Path

import pytest

from ..tracking.readers import tensorboard_scalars, wandb_records
from .conftest import TINY_CONFIG


def _mlflow_runs(app_dir: Path) -> list:
    """Every run in the app's local MLflow store, read with MLflow's own client."""
    from mlflow import MlflowClient

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        client = MlflowClient(tracking_uri=(app_dir / "mlruns").resolve().as_uri())
    finally:
        del os.environ["MLFLOW_ALLOW_FILE_STORE"]
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    return [(client.get_experiment(r.info.experiment_id).name, r) for r in runs]


def _out_dir(result) -> Path:
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.stdout.strip().splitlines()[-1])["out_dir"])


def test_the_table_and_the_flag_turn_trackers_on(make_app, invoke):
    table = (
        "\n[tool.pollinate.app.track]\n"
        "tensorboard = true\n"
        'mlflow = { experiment = "exp", enabled = false }\n'
    )
    app_dir = make_app(config=TINY_CONFIG + table)
    plain = _out_dir(invoke("run", app_dir, "--json"))
    assert tensorboard_scalars(plain / "tensorboard")["server/accuracy"][2] == pytest.approx(0.7)
    assert not (app_dir / "mlruns").exists()  # enabled = false: only with --track

    tracked = _out_dir(invoke("run", app_dir, "--json", "--track", "mlflow"))
    assert (tracked / "tensorboard").is_dir()
    ((experiment, run),) = _mlflow_runs(app_dir)
    assert experiment == "exp" and run.info.run_name == tracked.name
    assert run.info.status == "FINISHED"
    assert run.data.params["num-server-rounds"] == "2"
    assert run.data.metrics["train/replies-ok"] == 3.0


def test_a_failed_run_ends_failed_in_each_tracker(make_app, invoke, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for name in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    app_dir = make_app()
    out = tmp_path / "run"
    args = ("--out", out, "--track", "mlflow,wandb", "--run-config", "crash=true")
    result = invoke("run", app_dir, *args)
    assert result.exit_code == 1 and "failed on purpose" in result.stderr
    ((experiment, run),) = _mlflow_runs(app_dir)
    assert experiment == app_dir.name and run.info.status == "FAILED"
    (wandb_run,) = (out / "wandb").glob("offline-run-*")
    (exit_record,) = [r.exit for r in wandb_records(wandb_run) if r.HasField("exit")]
    assert exit_record.exit_code == 1
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


@pytest.mark.parametrize(
    ("table", "args", "message"),
    [
        ("comet = true", (), "unknown key 'comet'; known keys: mlflow, tensorboard, wandb"),
        (
            'mlflow = { tracking_uri = "x" }',
            (),
            "unknown key 'tracking_uri' (did you mean 'tracking-uri'?)",
        ),
        ("wandb = { project = 3 }", (), "project must be a string, got 3"),
        ('wandb = { mode = "disabled" }', (), 'mode must be "online" or "offline"'),
        ("tensorboard = 1", (), "tensorboard in "),
        ("", ("--track", "tensorboard,comet"), "--track 'comet': unknown tracker"),
    ],
)
def test_a_bad_tracker_setting_is_one_clear_error_before_a_run(
    make_app, invoke, table, args, message
):
    app_dir = make_app(config=TINY_CONFIG + f"\n[tool.pollinate.app.track]\n{table}\n")
    result = invoke("run", app_dir, *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not (app_dir / "runs").exists()


def test_track_is_refused_for_a_deployed_federation(make_app, invoke):
    federations = '[tool.pollinate.federations.prod]\naddress = "127.0.0.1:9"\ninsecure = true\n'
    result = invoke("run", make_app(federations=federations), "prod", "--track", "mlflow")
    assert result.exit_code == 1
    assert "--track is for simulations" in result.stderr


def test_the_summary_says_where_each_tracker_sent_the_run(make_app, invoke):
    app_dir = make_app()
    result = invoke("run", app_dir, "--track", "tensorboard,mlflow")
    assert result.exit_code == 0, result.output
    assert "tracked in tensorboard: " in result.stdout and "/tensorboard" in result.stdout
    mlruns = (app_dir / "mlruns").resolve().as_uri()
    assert f"tracked in mlflow: {mlruns}, experiment {app_dir.name}" in result.stdout
