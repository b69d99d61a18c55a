"""WandbTracker: an offline run (no key, no network), read back from wandb's own records."""

import os
import threading

import numpy as np
import pytest

from pollinate.errors import ConfigError
from pollinate.tracking import WandbTracker

from .apps import ROUNDS, RUN_CONFIG, simulate
from .readers import wandb_records


def wandb_processes():
    """The wandb-core processes this test process started (children still alive)."""
    children = []
    for status in os.listdir("/proc"):
        if not status.isdigit():
            continue
        try:
            with open(f"/proc/{status}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{status}/cmdline", "rb") as f:
                command = f.read()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"wandb" in command and fields[0] != "Z":
            children.append(int(status))
    return children


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads child processes from /proc")
def test_an_offline_run_has_config_metrics_per_round_and_the_model(tmp_path, no_stray_threads):
    threads = set(threading.enumerate())
    tracker = WandbTracker("proj", dir=tmp_path, run_name="r1", run_config=RUN_CONFIG)
    assert tracker.mode == "offline"  # no WANDB_API_KEY
    with tracker:
        assert wandb_processes()  # the service runs while the run does
        result = simulate([tracker])
    assert not wandb_processes()  # the service process ended with the run
    assert set(threading.enumerate()) <= threads
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    records = wandb_records(run_dir)
    kinds = [r.WhichOneof("record_type") for r in records]
    (run,) = [r.run for r in records if r.HasField("run")]
    assert run.project == "proj" and run.display_name == "r1"
    config = {item.key: item.value_json for item in run.config.update}
    assert {k: config[k] for k in RUN_CONFIG} == {
        "learning-rate": "0.1",
        "optimizer": '"sgd"',
        "clip": "true",
    }
    steps = {}
    for history in (r.history for r in records if r.HasField("history")):
        values = {i.key or "/".join(i.nested_key): i.value_json for i in history.item}
        steps[int(values["_step"])] = values
    assert sorted(steps) == list(range(ROUNDS + 1))
    assert {s: float(v["server/loss"]) for s, v in steps.items()} == {
        r: 1.0 / (r + 1) for r in range(ROUNDS + 1)
    }
    assert steps[2]["train/replies-failed"] == "1" and "server/diverged" not in steps[2]
    (artifact,) = [r.artifact for r in records if r.HasField("artifact")]
    assert artifact.name == "model" and artifact.type == "model"
    (entry,) = artifact.manifest.contents
    assert entry.path == "model.npz"
    with np.load(entry.local_path) as saved:  # the staged copy wandb sync would upload
        for name, array in result.arrays.items():
            np.testing.assert_array_equal(saved[name], array.numpy())
    exit_record = records[kinds.index("exit")].exit
    assert exit_record.exit_code == 0


def test_a_run_that_raises_exits_nonzero_offline(tmp_path, no_stray_threads):
    with pytest.raises(RuntimeError), WandbTracker(dir=tmp_path):
        raise RuntimeError("the run broke")
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (exit_record,) = [r.exit for r in wandb_records(run_dir) if r.HasField("exit")]
    assert exit_record.exit_code == 1
    assert not wandb_processes()


def test_online_without_credentials_is_one_error_not_a_prompt(
    tmp_path, monkeypatch, no_stray_threads
):
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with pytest.raises(ConfigError, match="wandb online mode needs credentials"):
        WandbTracker(mode="online", dir=tmp_path)
    assert not wandb_processes()


@pytest.mark.parametrize(
    ("environment", "mode"),
    [
        ({}, "offline"),
        ({"WANDB_API_KEY": "k"}, "online"),
        ({"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}, "offline"),  # W&B's own switch wins
        ({"WANDB_API_KEY": "k", "WANDB_MODE": "dryrun"}, "offline"),
        ({"WANDB_MODE": "online"}, "online"),
        ({"WANDB_MODE": "disabled"}, "turns W&B off"),
        ({"WANDB_MODE": "sideways"}, "not a W&B mode"),
    ],
)
def test_the_mode_follows_wandb_s_own_settings(monkeypatch, environment, mode):
    from pollinate.tracking._wandb import _mode_from_environment

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    if mode in ("online", "offline"):
        assert _mode_from_environment() == mode
    else:
        with pytest.raises(ConfigError, match=mode):
            _mode_from_environment()
