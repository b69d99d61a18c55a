"""An app in ``flwr new``'s layout, written against Flower's message API, runs on pollinate.

The app is ``tests/compat/apps/torch_mlp`` (our own: an MLP on scikit-learn's digits): its
pyproject has ``[tool.flwr.app.components]`` and ``[tool.flwr.app.config]`` and no
federations, its package a client_app.py, server_app.py and task.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pollinate import ServerApp, run_simulation
from pollinate.config import load_app_config, resolve_federation
from pollinate.loader import load_object

APP = Path(__file__).parents[1] / "apps" / "torch_mlp"
MLP_KEYS = ["hidden.bias", "hidden.weight", "out.bias", "out.weight"]

SEED_FEDERATIONS = """
[tool.flwr.federations]
default = "local-simulation"

[tool.flwr.federations.local-simulation]
options.num-supernodes = 10
"""


def copy_app(folder: Path, federations: str = "") -> Path:
    """The app copied into ``folder`` (it saves final_model.pt where it runs), with
    ``federations`` appended to its pyproject.toml."""
    shutil.copytree(APP, folder, ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = folder / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + federations)
    return folder


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread, as the machine's cores are shared; restored afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.mark.slow
def test_pollinate_run_runs_the_app_as_flwr_new_wrote_it(tmp_path: Path) -> None:
    app_dir = copy_app(tmp_path / "mlp-app")
    out_dir = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pollinate.cli",
            "run",
            str(app_dir),
            "--json",
            "--out",
            str(out_dir),
            "--run-config",
            "num-server-rounds=2",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # the ServerApp saves final_model.pt where it runs, as under Flower
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 2, done.stderr
    assert "[tool.pollinate.app.components]" in notes[0]
    assert "defines no federations" in notes[1]  # Flower 1.26+ keeps them elsewhere

    summary = json.loads(done.stdout.strip().splitlines()[-1])
    rounds = {r["round"]: r for r in summary["rounds"]}
    assert sorted(rounds) == [0, 1, 2]
    assert set(rounds[0]["server"]) == {"accuracy", "loss"}  # global_evaluate before round 1
    assert rounds[2]["train"]["ok"] == 10  # Flower's default: 10 supernodes
    assert rounds[2]["evaluate"]["ok"] == 5  # fraction-evaluate = 0.5
    assert {"train_loss", "num-examples"} <= set(rounds[2]["train"]["metrics"])
    assert rounds[2]["train"]["metrics"]["lr"] == pytest.approx(0.1)  # train_config reached nodes
    assert {"eval_loss", "eval_acc"} <= set(rounds[2]["evaluate"]["metrics"])
    saved = torch.load(tmp_path / "final_model.pt")
    assert sorted(saved) == MLP_KEYS
    with np.load(out_dir / "model.npz") as model:
        assert sorted(model.files) == MLP_KEYS
        for key in MLP_KEYS:
            np.testing.assert_array_equal(model[key], saved[key].numpy())
    assert rounds[2]["server"]["accuracy"] > rounds[0]["server"]["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["inline", "process"])
def test_run_simulation_runs_the_app_on_each_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None, backend: str
) -> None:
    app_dir = copy_app(tmp_path / "app", SEED_FEDERATIONS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the worker processes
    app = load_app_config(app_dir)
    assert resolve_federation(app, None, []).num_nodes == 10
    result = run_simulation(
        load_object(app.serverapp, ServerApp, app_dir),
        app.clientapp,
        num_nodes=4,
        app_dir=app_dir,
        backend=backend,
        backend_options={"num_workers": 2} if backend == "process" else None,
        run_config={**app.run_config, "num-server-rounds": 2},
    )
    assert [r.server_round for r in result.rounds] == [0, 1, 2]
    assert [r.train.num_ok for r in result.rounds[1:]] == [4, 4]
    assert [r.evaluate.num_ok for r in result.rounds[1:]] == [2, 2]
    assert sorted(result.arrays) == MLP_KEYS
    saved = torch.load(tmp_path / "final_model.pt")
    np.testing.assert_array_equal(
        result.arrays["hidden.weight"].numpy(), saved["hidden.weight"].numpy()
    )
