import json
import re
import subprocess
import sys

import numpy as np
import pytest

import pollinate
from pollinate.server import load_arrays
from pollinate.simulation import _gpus


def _summary(result) -> dict:
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout  # --json: nothing else on stdout
    return json.loads(lines[0])


def test_version(invoke):
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"pollinate {pollinate.__version__}\n"


def test_run_json_line_has_every_round_and_the_final_metrics(make_app, invoke):
    summary = _summary(invoke("run", make_app(), "--json"))
    assert set(summary) == {"run_id", "out_dir", "wall_time_s", "rounds_time_s", "rounds", "final"}
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    assert summary["rounds"][1]["train"] == {
        "ok": 3,
        "failed": 0,
        "metrics": {"num-examples": 30, "train-loss": 1.0},
        "failures": [],
    }
    assert summary["final"] == {
        "train.num-examples": 30,
        "train.train-loss": 1.0,
        "evaluate.num-examples": 30,
        "evaluate.loss": 0.5,
        "evaluate.accuracy": 0.75,
        "server.accuracy": pytest.approx(0.7),
    }


def test_no_checkpoints_flag_keeps_only_the_final_model(make_app, invoke):
    app_dir = make_app()
    summary = _summary(invoke("run", app_dir, "--json", "--no-checkpoints"))
    out_dir = app_dir / "runs" / summary["out_dir"].rsplit("/", 1)[-1]
    assert (out_dir / "model.npz").exists() and not (out_dir / "checkpoints").exists()


def test_prints_from_the_app_go_to_stderr_in_json_mode(make_app, invoke):
    result = invoke("run", make_app(), "--json")
    _summary(result)
    assert "a print from the ServerApp" in result.stderr
    assert "a print from a ClientApp" in result.stderr


def test_out_dir_holds_metrics_model_and_run_record(make_app, invoke):
    app_dir = make_app()
    summary = _summary(invoke("run", app_dir, "--json", "--run-config", "num-server-rounds=3"))
    out_dir = app_dir / "runs" / summary["out_dir"].rsplit("/", 1)[-1]
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{8}", out_dir.name)
    assert out_dir.name.endswith(f"{summary['run_id'] & 0xFFFFFFFF:08x}")
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == summary["rounds"]
    model = load_arrays(out_dir / "model.npz")
    np.testing.assert_array_equal(model["w"].numpy(), np.full((2, 3), 6.0, np.float32))
    checkpoints = sorted(p.name for p in (out_dir / "checkpoints").iterdir())
    assert checkpoints == [f"round-{r:04d}.npz" for r in range(4)]
    assert load_arrays(out_dir / "checkpoints" / "round-0003.npz") == model
    run = json.loads((out_dir / "run.json").read_text())
    assert run["run_id"] == summary["run_id"]
    assert run["status"] == "finished" and run["error"] is None
    assert run["app_dir"] == str(app_dir)
    assert run["federation"] == {
        "name": "local-simulation",
        "num-nodes": 3,
        "backend": "inline",
        "num-workers": None,
        "client-resources": {"num-cpus": None, "num-gpus": 0.0},
    }
    assert run["run_config"]["num-server-rounds"] == 3
    assert run["num_rounds"] == 3
    assert run["final"] == summary["final"]
    assert run["rounds_time_s"] == summary["rounds_time_s"]


def test_out_option_picks_the_folder_and_refuses_to_mix_runs(make_app, invoke, tmp_path):
    app_dir = make_app()
    out_dir = tmp_path / "results" / "first"
    summary = _summary(invoke("run", app_dir, "--out", out_dir, "--json"))
    assert summary["out_dir"] == str(out_dir)
    assert (out_dir / "run.json").is_file()
    again = invoke("run", app_dir, "--out", out_dir)
    assert again.exit_code == 1
    assert "already holds a run's results" in again.stderr


def test_progress_is_a_plain_line_per_round_without_a_terminal(make_app, invoke):
    result = invoke("run", make_app(), "--run-config", "broken-nodes=2")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "round 0 (initial model): server.accuracy=0.5000" in lines
    assert (
        "round 1/2: train 2 ok 1 failed, evaluate 3 ok; server.accuracy=0.6000 "
        "evaluate.accuracy=0.7500 evaluate.loss=0.5000"
    ) in lines
    assert any(
        line.startswith("warning: round 1 train: set aside node 2: ")
        and "RuntimeError: node 2 broke" in line
        for line in lines
    )
    assert "\x1b[" not in result.stderr  # no colours or cursor moves
    assert [line[:9] for line in lines if line.startswith("round ")] == [
        "round 0 (",
        "round 1/2",
        "round 2/2",
    ]  # one view: run_simulation's own stays quiet
    assert "Finished" not in result.stderr
    assert "Finished 2 rounds" in result.stdout
    assert "results: " in result.stdout


def test_verbose_shows_info_logs(make_app, invoke):
    quiet = invoke("run", make_app())
    loud = invoke("run", make_app(), "-v")
    assert "info: starting FedAvg" not in quiet.stderr
    assert "info: starting FedAvg" in loud.stderr


def test_default_federation_can_be_named_and_overridden(make_app, invoke):
    federations = """
[tool.pollinate.federations]
default = "two"
[tool.pollinate.federations.two]
num-nodes = 2
[tool.pollinate.federations.five]
num-nodes = 5
"""
    app_dir = make_app(federations=federations)
    assert _summary(invoke("run", app_dir, "--json"))["rounds"][1]["train"]["ok"] == 2
    assert _summary(invoke("run", app_dir, "five", "--json"))["rounds"][1]["train"]["ok"] == 5
    summary = _summary(
        invoke("run", app_dir, "five", "--federation-config", "num-nodes=4", "--json")
    )
    assert summary["rounds"][1]["train"]["ok"] == 4


def _fails_cleanly(result, message: str) -> None:
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run-config", "rounds=3"], "--run-config: unknown key 'rounds'"),
        (
            ["--run-config", "num-server-rounds=two"],
            "'num-server-rounds' (default 2) must be an int",
        ),
        (
            ["--run-config", "num-server-rounds"],
            "--run-config: 'num-server-rounds' is not key=value",
        ),
        (["--run-config", "crash='yes"], "--run-config: cannot split"),
        (["--federation-config", "num-cpus=2"], "--federation-config: unknown key 'num-cpus'"),
        (
            ["--federation-config", "client-resources.num-gpus=1.5"],
            "above 1 a node holds whole GPUs; use 1 or 2",
        ),
        (["big-cluster"], "unknown federation 'big-cluster'; "),
    ],
)
def test_bad_input_is_one_clear_error(make_app, invoke, args, message):
    app_dir = make_app()
    _fails_cleanly(invoke("run", app_dir, *args), message)
    assert not (app_dir / "runs").exists()


def test_asking_for_gpus_a_machine_lacks_is_one_clear_error(make_app, invoke, monkeypatch):
    monkeypatch.setattr(_gpus, "count_visible_gpus", lambda: (0, "a fake probe"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    result = invoke("run", make_app(), "--federation-config", "client-resources.num-gpus=0.5")
    _fails_cleanly(result, "0.5 GPU per node, and this machine has no GPUs (counted by a fake")
    assert "set client-resources.num-gpus = 0 to run on the CPU" in result.stderr


def test_a_malformed_ray_address_is_refused_before_a_run_folder_exists(make_app, invoke):
    app_dir = make_app()
    result = invoke("run", app_dir, "--federation-config", "backend=ray ray-address=head-node")
    _fails_cleanly(result, "ray-address = 'head-node' must be \"\" (a local Ray)")
    assert not (app_dir / "runs").exists()


def test_missing_component_is_one_clear_error(make_app, invoke):
    app_dir = make_app(components='[tool.pollinate.app.components]\nserverapp = "x.y:app"\n')
    _fails_cleanly(invoke("run", app_dir), "[tool.pollinate.app.components] in ")
    assert "has no 'clientapp'" in invoke("run", app_dir).stderr


def test_missing_pyproject_is_one_clear_error(tmp_path, invoke):
    _fails_cleanly(invoke("run", tmp_path), "no pyproject.toml in ")


def test_import_error_in_the_app_is_one_clear_error(make_app, invoke):
    app_dir = make_app(server="from numpy import no_such_thing\n")
    result = invoke("run", app_dir)
    _fails_cleanly(result, f"importing '{app_dir.name}.server_app' raised ImportError: ")
    assert "server_app.py:1)" in result.stderr  # where in the app it failed
    assert not (app_dir / "runs").exists()


def test_missing_module_is_one_clear_error(make_app, invoke):
    components = """
[tool.pollinate.app.components]
serverapp = "nope.server:app"
clientapp = "nope.client:app"
"""
    app_dir = make_app(components=components)
    _fails_cleanly(invoke("run", app_dir), "cannot find module 'nope.server'")


def test_exception_in_the_app_shows_its_traceback_and_is_recorded(make_app, invoke):
    app_dir = make_app()
    result = invoke("run", app_dir, "--run-config", "crash=true", "--json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Traceback" in result.stderr
    assert "helper_that_fails" in result.stderr
    assert "pollinate/simulation" not in result.stderr  # starts in the app's code
    last = result.stderr.strip().splitlines()[-1]
    assert last == "error: the app raised ValueError: the server app failed on purpose"
    (run_file,) = app_dir.glob("runs/*/run.json")
    run = json.loads(run_file.read_text())
    assert run["status"] == "failed"
    assert run["error"] == "ValueError: the server app failed on purpose"


def test_too_few_replies_is_one_clear_error_and_recorded(make_app, invoke):
    app_dir = make_app()
    result = invoke("run", app_dir, "--run-config", "broken-nodes='1 2 3'")
    _fails_cleanly(result, "round 1 train: 0 valid replies, the strategy needs at least 1")
    (run_file,) = app_dir.glob("runs/*/run.json")
    assert json.loads(run_file.read_text())["status"] == "failed"


def test_cli_starts_without_importing_heavy_libraries(make_app, tmp_path):
    app_dir = make_app()
    script = f"""
import sys
from pollinate.cli import main
for args in (["--version"], ["run", {str(app_dir)!r}, "--json"]):
    try:
        main(args)
    except SystemExit as exit:
        assert exit.code == 0, exit.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "sklearn", "matplotlib"))
print("HEAVY", heavy)
"""
    process = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_python_dash_m_runs_the_cli(run_cli):
    process = run_cli("--version")
    assert process.returncode == 0
    assert process.stdout == f"pollinate {pollinate.__version__}\n"


def test_the_cli_package_exports_main():
    import pollinate.cli

    assert pollinate.cli.__all__ == ["main"]
    assert callable(pollinate.cli.main)


EARLY_SERVER = """
import multiprocessing

import numpy as np

from pollinate import ArrayRecord, FedAvg, ServerApp

WORKERS_AT_IMPORT = len(multiprocessing.active_children())
app = ServerApp()


@app.main()
def main(grid, context):
    print(f"workers running when the ServerApp was imported: {WORKERS_AT_IMPORT}")
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1)
    return strategy.start(grid, ArrayRecord({"w": np.zeros((2, 3), np.float32)}), num_rounds=1)
"""


def test_process_workers_start_up_while_the_server_app_is_imported(make_app, invoke):
    result = invoke(
        "run",
        make_app(server=EARLY_SERVER),
        "--json",
        "--federation-config",
        "backend=process num-workers=2",
    )
    assert _summary(result)["rounds"][-1]["train"]["ok"] == 3
    assert "workers running when the ServerApp was imported: 2" in result.stderr
