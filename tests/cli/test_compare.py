import json
import shutil
import sys
from pathlib import Path

import pytest

BLOBS_APP = Path(__file__).resolve().parents[1] / "compare" / "blobs_app"


@pytest.fixture
def blobs_app(tmp_path):
    """A copy of the blobs app (six classes, three partitions each missing two)."""
    app_dir = tmp_path / "blobs-app"
    shutil.copytree(BLOBS_APP, app_dir)
    return app_dir


def test_json_line_is_the_table_and_the_folder_has_every_file(blobs_app, invoke, tmp_path):
    out = tmp_path / "out"
    result = invoke("compare", blobs_app, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout.strip().splitlines()[-1])
    assert table["out_dir"] == str(out.resolve())
    assert table["missing_labels"] == {"0": [0, 1], "1": [2, 3], "2": [4, 5]}
    models = {m["model"]: m for m in table["models"]}
    assert list(models) == ["isolated-0", "isolated-1", "isolated-2", "federated"]
    assert models["isolated-1"]["accuracy_on_missing"]["1"] == 0.0
    assert min(models["federated"]["accuracy_on_missing"].values()) > 0.9
    assert sorted(p.name for p in out.iterdir()) == [
        "comparison.json",
        "comparison.md",
        "confusion",
        "curves.png",
        "federated",
        "isolated",
    ]
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["models"] == table["models"]
    assert saved["federation"]["num-nodes"] == 3 and saved["run_config"]["local-steps"] == 30
    assert len(saved["curves"]["federated"]) == 5
    assert "Test accuracy: isolated vs federated" in result.stderr


def test_table_goes_to_stdout_without_json(blobs_app, invoke, tmp_path):
    result = invoke(
        "compare", blobs_app, "--out", tmp_path / "out", "--run-config", "num-server-rounds=1"
    )
    assert result.exit_code == 0, result.output
    assert "p0 never saw" in result.stdout and "federated" in result.stdout
    assert "isolated model per partition" in result.stderr


def test_an_app_without_predict_is_told_where_to_add_it(blobs_app, invoke):
    pyproject = blobs_app / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('predict = "blobs:predict"\n', ""))
    result = invoke("compare", blobs_app)
    assert result.exit_code == 1
    assert "error: pollinate compare needs the app's predict function" in result.stderr
    assert 'predict = "blobs:predict"' in result.stderr
    assert not (blobs_app / "runs").exists()


def test_a_folder_with_a_comparison_is_not_overwritten(blobs_app, invoke, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "comparison.json").write_text("{}")
    result = invoke("compare", blobs_app, "--out", out)
    assert result.exit_code == 1 and "already holds a comparison" in result.stderr


def test_missing_matplotlib_is_reported_before_any_training(blobs_app, invoke, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    result = invoke("compare", blobs_app)
    assert result.exit_code == 1
    assert "pip install 'pollinate[plot]'" in result.stderr
    assert not (blobs_app / "runs").exists()
