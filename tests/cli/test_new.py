import importlib
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from pollinate.cli._new import _DEPENDENCIES, _PIP_NAMES, TEMPLATES, create_app, package_name
from pollinate.config import load_app_config, resolve_federation
from pollinate.errors import ConfigError
from pollinate.server import load_arrays

EXPECTED_FILES = {
    ".gitignore",
    "README.md",
    "pyproject.toml",
    "{package}/__init__.py",
    "{package}/client_app.py",
    "{package}/server_app.py",
    "{package}/task.py",
}

MODEL_ARRAYS = {
    "pytorch": ["hidden.weight", "hidden.bias", "output.weight", "output.bias"],
    "keras": ["mlp/hidden/kernel", "mlp/hidden/bias", "mlp/output/kernel", "mlp/output/bias"],
    "numpy": ["weights", "bias"],
    "sklearn": ["coef", "intercept"],
    "jax": ["hidden.bias", "hidden.weight", "output.bias", "output.weight"],  # pytree order
    "pytorch-dpsgd": ["hidden.weight", "hidden.bias", "output.weight", "output.bias"],
}
"""The names, in order, of the arrays each template's model travels and is saved as."""

FRAMEWORKS_DOC = Path(__file__).parents[2] / "docs" / "frameworks.md"


def _skip_unless_installed(template: str) -> None:
    """Skip a test that runs ``template``'s app where a module the app imports is missing."""
    missing = [m for m in _DEPENDENCIES[template] if importlib.util.find_spec(m) is None]
    if missing:
        names = " ".join(_PIP_NAMES.get(m, m) for m in missing)
        pytest.skip(f"the {template} template needs {names}, not installed: pip install {names}")


@pytest.mark.parametrize(
    ("name", "package"), [("demo", "demo"), ("My-App", "my_app"), ("fl_2", "fl_2")]
)
def test_package_name_is_the_name_lowercased_with_underscores(name, package):
    assert package_name(name) == package


@pytest.mark.parametrize("name", ["2fast", "my app", "app!", "", "-x", "../up"])
def test_invalid_names_are_refused(name):
    with pytest.raises(ConfigError, match="is not a valid app name"):
        package_name(name)


@pytest.mark.parametrize("name", ["json", "class", "torch", "pollinate", "keras", "jax"])
def test_names_that_hide_a_module_are_refused(name):
    with pytest.raises(ConfigError, match="hides the module of that name"):
        package_name(name)


@pytest.mark.parametrize("template", TEMPLATES)
def test_new_writes_a_complete_app(tmp_path, template):
    files = create_app("My-App", template, tmp_path)
    app_dir = tmp_path / "My-App"
    written = {p.relative_to(app_dir).as_posix() for p in files}
    assert written == {f.format(package="my_app") for f in EXPECTED_FILES}
    for path in files:
        text = path.read_text()
        assert "$" not in text, f"{path} has an unfilled placeholder"
        if path.suffix == ".py":
            compile(text, str(path), "exec")
    pyproject = (app_dir / "pyproject.toml").read_text()
    assert 'serverapp = "my_app.server_app:app"' in pyproject
    assert 'name = "My-App"' in pyproject


def test_new_fills_an_existing_empty_folder(tmp_path):
    (tmp_path / "demo").mkdir()
    assert create_app("demo", "numpy", tmp_path)


def test_new_refuses_a_folder_that_is_not_empty(tmp_path, invoke):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "notes.txt").write_text("mine")
    result = invoke("new", "demo", "--dir", tmp_path)
    assert result.exit_code == 1
    assert "error: " in result.stderr and "already exists and is not empty" in result.stderr
    assert "Traceback" not in result.output
    assert (tmp_path / "demo" / "notes.txt").read_text() == "mine"


def test_new_command_says_what_to_do_next(tmp_path, invoke):
    result = invoke("new", "demo", "--template", "numpy", "--dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "demo/task.py" in result.stdout
    next_steps = result.stdout.split("Next:")[1].split("\n")
    assert next_steps[1].strip().startswith("pollinate run ")
    assert next_steps[2].strip().startswith("pollinate compare ")


def test_new_command_names_what_to_install_for_a_template(tmp_path, invoke, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "jax" else find_spec(name)
    )
    result = invoke("new", "demo", "--template", "jax", "--dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert "pip install jax " in result.stdout


def test_new_with_an_invalid_name_is_one_clear_error(tmp_path, invoke):
    result = invoke("new", "2fast", "--dir", tmp_path)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: '2fast' is not a valid app name")
    assert not (tmp_path / "2fast").exists()


def _last_json_line(process: subprocess.CompletedProcess) -> dict:
    assert process.returncode == 0, process.stderr
    lines = process.stdout.strip().splitlines()
    assert len(lines) == 1, process.stdout  # --json: nothing else on stdout
    return json.loads(lines[-1])


def _check_json_schema(summary: dict, num_rounds: int, private: bool = False) -> None:
    keys = {"run_id", "out_dir", "wall_time_s", "rounds_time_s", "rounds", "final"}
    assert set(summary) == keys | ({"privacy"} if private else set())
    assert [r["round"] for r in summary["rounds"]] == list(range(num_rounds + 1))
    assert 0 < summary["rounds_time_s"] <= summary["wall_time_s"]
    for record in summary["rounds"][1:]:
        assert record["train"]["ok"] == 5 and record["train"]["failed"] == 0
        assert record["evaluate"]["ok"] == 5
        assert set(record["evaluate"]["metrics"]) == {"num-examples", "loss", "accuracy"}
    assert {"server.accuracy", "evaluate.accuracy", "train.train-loss"} <= set(summary["final"])


@pytest.mark.parametrize("template", TEMPLATES)
def test_new_app_runs_one_round_and_learns(tmp_path, run_cli, template):
    _skip_unless_installed(template)
    assert run_cli("new", "demo", "--template", template, cwd=tmp_path).returncode == 0
    process = run_cli("run", "demo", "--run-config", "num-server-rounds=1", "--json", cwd=tmp_path)
    summary = _last_json_line(process)
    _check_json_schema(summary, num_rounds=1, private=template == "pytorch-dpsgd")
    assert summary["rounds"][0]["server"]["accuracy"] < 0.3  # the untrained model guesses
    # chance is 0.1; DP-SGD's noise slows learning (0.40 after the first round)
    assert summary["final"]["server.accuracy"] > (0.3 if template == "pytorch-dpsgd" else 0.5)
    out_dir = tmp_path / "demo" / "runs" / summary["out_dir"].rsplit("/", 1)[-1]
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "checkpoints",
        "metrics.jsonl",
        "model.npz",
        "run.json",
    ]
    assert "round 1/1: train 5 ok, evaluate 5 ok" in process.stderr
    assert list(load_arrays(out_dir / "model.npz")) == MODEL_ARRAYS[template]


@pytest.mark.parametrize("template", TEMPLATES)
# Keras's variables under numpy 2 warn in get_weights; in this process warnings are errors.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
def test_new_app_compares_federated_with_isolated(tmp_path, invoke, monkeypatch, template):
    _skip_unless_installed(template)
    pytest.importorskip("matplotlib")  # compare writes its plots
    # In this process, the keras app's os.environ.setdefault would outlive the test.
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "torch"))
    assert invoke("new", "demo", "--template", template, "--dir", tmp_path).exit_code == 0
    app = load_app_config(tmp_path / "demo")
    num_nodes = resolve_federation(app, None, []).num_nodes  # the template's default federation
    result = invoke("compare", app.app_dir, "--run-config", "num-server-rounds=1", "--json")
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout.strip().splitlines()[-1])
    assert [m["model"] for m in table["models"]] == [
        *(f"isolated-{p}" for p in range(num_nodes)),
        "federated",
    ]
    for model in table["models"]:
        assert 0 <= model["accuracy"] <= 1 and model["loss"] > 0, model  # predict gives a loss
        assert model["num_examples"] > 0, model  # the nodes answered query.label-counts
    *isolated, federated = table["models"]
    # One round with fraction-train 0.5: the nodes that sat it out keep the initial model (at
    # chance), so compare the federated model with the isolated models that trained. After one
    # round it beats their mean by 5 (sklearn) to 36 (jax) points; it must not fall below it.
    trained = [m["accuracy"] for m in isolated if m["rounds_trained"] == 1]
    assert 0 < len(trained) < num_nodes
    assert federated["accuracy"] >= statistics.mean(trained) - 0.02


def test_sklearn_node_lacking_some_digits_still_fits_all_ten(tmp_path, monkeypatch):
    _skip_unless_installed("sklearn")
    create_app("sk-app", "sklearn", tmp_path)
    monkeypatch.syspath_prepend(tmp_path / "sk-app")
    task = importlib.import_module("sk_app.task")
    data, _ = task.load_partition(0, 10)
    few = task.Dataset(data.x[data.y < 7], data.y[data.y < 7])
    model = task.make_model(task.init_params())
    task.train(model, few, epochs=3)  # too few to converge: the app silences that warning
    assert model.coef_.shape == (10, 64) and list(model.classes_) == list(range(10))
    assert set(model.predict(data.x)) <= set(range(7))


def test_keras_checkpoint_loads_as_docs_frameworks_shows(tmp_path, run_cli):
    _skip_unless_installed("keras")
    assert run_cli("new", "demo", "--template", "keras", cwd=tmp_path).returncode == 0
    process = run_cli("run", "demo", "--run-config", "num-server-rounds=1", "--json", cwd=tmp_path)
    out_dir = tmp_path / _last_json_line(process)["out_dir"]
    doc = FRAMEWORKS_DOC.read_text()
    section = doc.split("## Loading a checkpoint into a Keras model", 1)[1]
    (tmp_path / "demo" / "predict.py").write_text(section.split("```python\n")[1].split("```")[0])
    checkpoint = out_dir / "checkpoints" / "round-0001.npz"
    predicted = subprocess.run(
        [sys.executable, "predict.py", str(checkpoint)],
        capture_output=True,
        text=True,
        cwd=tmp_path / "demo",
        timeout=120,
        check=False,
    )
    assert predicted.returncode == 0, predicted.stderr
    assert re.fullmatch(r"true digit \d, predicted \d", predicted.stdout.strip()), predicted.stdout


def test_pytorch_app_learns_on_the_process_backend_in_its_default_config(tmp_path, run_cli):
    assert run_cli("new", "demo", cwd=tmp_path).returncode == 0
    process = run_cli(
        "run",
        "demo",
        "--federation-config",
        "backend=process num-workers=2",
        "--json",
        cwd=tmp_path,
    )
    summary = _last_json_line(process)
    _check_json_schema(summary, num_rounds=3)
    assert summary["final"]["server.accuracy"] >= 0.8
    run = json.loads((tmp_path / summary["out_dir"] / "run.json").read_text())
    assert run["federation"]["backend"] == "process" and run["federation"]["num-workers"] == 2
    model = load_arrays(tmp_path / summary["out_dir"] / "model.npz")
    assert list(model) == ["hidden.weight", "hidden.bias", "output.weight", "output.bias"]


def test_numpy_app_learns_in_its_default_config(tmp_path, invoke):
    assert invoke("new", "demo", "--template", "numpy", "--dir", tmp_path).exit_code == 0
    result = invoke("run", tmp_path / "demo", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    _check_json_schema(summary, num_rounds=3)
    assert summary["final"]["server.accuracy"] >= 0.8
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{8}", summary["out_dir"].rsplit("/", 1)[-1])


def test_dpsgd_app_learns_in_its_default_config_and_reports_node_epsilon(tmp_path, run_cli):
    _skip_unless_installed("pytorch-dpsgd")
    assert run_cli("new", "demo", "--template", "pytorch-dpsgd", cwd=tmp_path).returncode == 0
    process = run_cli("run", "demo", "--json", cwd=tmp_path)
    summary = _last_json_line(process)
    _check_json_schema(summary, num_rounds=3, private=True)
    assert summary["final"]["server.accuracy"] >= 0.7
    epsilons = [r["train"]["metrics"]["privacy.node-epsilon"] for r in summary["rounds"][1:]]
    assert all(0 < e < 20 for e in epsilons), epsilons  # each round's largest node's
    assert summary["privacy"]["node_epsilon"] == max(epsilons)
    assert summary["privacy"]["node_delta"] == pytest.approx(1e-5)
    assert epsilons[summary["privacy"]["node_round"] - 1] == max(epsilons)
    assert "UserWarning" not in process.stderr  # the app silences Opacus's hook warning

    # Worker processes keep each node's account in its context.state between rounds too.
    parallel = run_cli("run", "demo", "local-parallel", "--json", cwd=tmp_path)
    assert _last_json_line(parallel)["privacy"] == summary["privacy"]

    shown = run_cli("run", "demo", "--run-config", "num-server-rounds=1", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if "privacy (nodes' own)" in x)
    assert re.search(
        r"epsilon [\d.]+ at delta 1e-05, the most any node reported \(round 1\)$", line
    ), line
