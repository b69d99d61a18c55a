"""What every tracker shares: lazy imports, the missing-library error, names and options."""

import os
import subprocess
import sys

import pytest

from pollinate.errors import ConfigError
from pollinate.server import PhaseResult, RoundRecord
from pollinate.tracking import (
    MLflowTracker,
    TensorBoardTracker,
    WandbTracker,
    make_tracker,
    require_library,
    round_scalars,
)


def test_importing_pollinate_imports_no_tracker_library():
    code = (
        "import sys, pollinate, pollinate.tracking, pollinate.cli._main\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorboard', 'mlflow', 'wandb')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("make", "module", "extra"),
    [
        (
            lambda p: TensorBoardTracker(p),
            "tensorboard.summary.writer.event_file_writer",
            "tensorboard",
        ),
        (lambda p: MLflowTracker(store_dir=p), "mlflow", "mlflow"),
        (lambda p: WandbTracker(dir=p), "wandb", "wandb"),
    ],
)
def test_a_missing_library_is_one_error_naming_the_extra(
    tmp_path, monkeypatch, make, module, extra
):
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(ConfigError, match=rf"pip install 'pollinate\[{extra}\]'"):
        make(tmp_path)


def test_a_missing_library_is_refused_before_a_run(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match=r"pip install 'pollinate\[wandb\]'"):
        require_library("wandb")
    require_library("tensorboard")


def test_round_scalars_are_the_finite_numbers_by_phase():
    record = RoundRecord(
        3,
        train=PhaseResult({"loss": 0.5, "per-class": [1.0, 2.0], "flag": True}, 4),
        evaluate=PhaseResult({"accuracy": float("inf")}, 1),
        server_metrics={"loss": float("nan"), "n": 7},
        wall_time_s=2.0,
        simulated_time_s=30.0,
    )
    assert round_scalars(record) == {
        "round/wall-time-s": 2.0,
        "round/simulated-time-s": 30.0,
        "train/loss": 0.5,
        "train/replies-ok": 4.0,
        "train/replies-failed": 0.0,
        "evaluate/replies-ok": 1.0,
        "evaluate/replies-failed": 0.0,
        "server/n": 7.0,
    }


def test_make_tracker_puts_tensorboard_in_the_run_folder(tmp_path):
    tracker = make_tracker("tensorboard", tmp_path / "run", {"a": 1})
    tracker.close()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_a_tracker_that_cannot_make_its_folder_is_one_error_naming_it(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "tensorboard").write_text("a file where its folder goes")
    with pytest.raises(ConfigError, match="tracker tensorboard cannot write where it keeps"):
        make_tracker("tensorboard", tmp_path / "run", {})


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("comet", {}, "unknown tracker 'comet'"),
        ("mlflow", {"uri": "x"}, "tracker mlflow: unknown option 'uri'"),
        ("wandb", {"mode": "disabled"}, "mode must be 'online' or 'offline'"),
    ],
)
def test_make_tracker_refuses_unknown_names_and_options(tmp_path, name, options, message):
    with pytest.raises(ConfigError, match=message):
        make_tracker(name, tmp_path, {}, options)


def test_a_tracker_left_open_ends_failed_when_the_process_exits(tmp_path):
    code = (
        "import sys\n"
        "from pollinate.tracking import MLflowTracker\n"
        "t = MLflowTracker(store_dir=sys.argv[1])\n"
        "print(t.run_id)\n"
        "raise SystemExit(0)  # a run that died without a result, the tracker never closed\n"
    )
    store = tmp_path / "mlruns"
    out = subprocess.run(
        [sys.executable, "-c", code, str(store)], capture_output=True, text=True, check=True
    )
    run_id = out.stdout.strip()
    from mlflow import MlflowClient

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        client = MlflowClient(tracking_uri=store.resolve().as_uri())
    finally:
        del os.environ["MLFLOW_ALLOW_FILE_STORE"]
    assert client.get_run(run_id).info.status == "FAILED"
