"""Apps written against Flower's APIs (imports from ``pollinate.compat.flwr``), run the way a
Flower user runs them: ``pollinate run APP`` in place of ``flwr run APP``, ``python script.py``.

Each app is our own, small and fast, and exercises one part of Flower's API surface:

- ``sklearn_logreg``: the message API with numpy arrays (``ArrayRecord([coef, intercept])``,
  ``to_numpy_ndarrays``), ``FedAvg(fraction_train=..., fraction_evaluate=...)`` and
  ``strategy.start`` without a train config or central evaluation.
- ``xgboost_bagging``: ``FedXgbBagging`` with a booster travelling as one byte array,
  ``msg.content["config"]["server-round"]`` and dotted run-config keys (``unflatten_dict``).
- ``classic_torch``: the classic API behind ``ClientApp(client_fn=...)`` and
  ``ServerApp(server_fn=...)``: a ``NumPyClient`` keeping state in ``context.state``, a mod,
  a JSON string metric, and a ``FedAvg`` subclass overriding ``aggregate_fit`` and
  ``evaluate`` with ``super()``.
- ``scratch_strategy.py``: a ``Strategy`` written from scratch (its six abstract methods)
  run by ``run_simulation(server_app=..., client_app=..., num_supernodes=...)``.
"""

from __future__ import annotations

import json
import pickle
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pollinate.cli._main import cli

HERE = Path(__file__).parent


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread, as the machine's cores are shared; restored afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _pollinate_run(app: str, out: Path, *args: str) -> tuple[dict[str, Any], str]:
    """``pollinate run APP --json --out OUT ...``: the JSON summary and what went to stderr."""
    done = CliRunner().invoke(
        cli, ["run", str(HERE / app), "--json", "--out", str(out), *args], catch_exceptions=False
    )
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _rounds(summary: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["round"]: r for r in summary["rounds"]}


def test_sklearn_logistic_regression_runs_under_pollinate_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the ServerApp saves logreg.pkl where it runs
    summary, stderr = _pollinate_run("sklearn_logreg", tmp_path / "run", "--stream")
    assert "note: pyproject.toml is written for Flower" in stderr
    rounds = _rounds(summary)
    assert sorted(rounds) == list(range(1, 13))  # num-server-rounds = 12
    assert [rounds[r]["train"]["ok"] for r in (1, 12)] == [10, 10]  # 10 nodes, fraction 1.0
    assert rounds[12]["evaluate"]["ok"] == 10
    first, last = rounds[1]["evaluate"]["metrics"], rounds[12]["evaluate"]["metrics"]
    assert last["test_logloss"] < 0.6 * first["test_logloss"]  # deterministic: 0.33 -> 0.17
    assert last["accuracy"] > 0.9

    monkeypatch.syspath_prepend(str(HERE / "sklearn_logreg"))
    from logreg_app.task import everything

    with open(tmp_path / "logreg.pkl", "rb") as saved:
        model = pickle.load(saved)
    assert model.coef_.shape == (3, 13)
    assert model.score(*everything()) > 0.9  # the saved model is the trained one


def test_xgboost_bagging_keeps_every_sampled_nodes_trees(tmp_path, monkeypatch):
    xgb = pytest.importorskip("xgboost")
    monkeypatch.chdir(tmp_path)  # the ServerApp saves ensemble.json where it runs
    summary, _ = _pollinate_run("xgboost_bagging", tmp_path / "run")
    rounds = _rounds(summary)
    assert sorted(rounds) == [1, 2, 3]
    assert [rounds[r]["train"]["ok"] for r in (1, 2, 3)] == [2, 2, 2]  # 0.1 of 10, at least 2
    assert [rounds[r]["evaluate"]["ok"] for r in (1, 2, 3)] == [2, 2, 2]
    assert rounds[3]["evaluate"]["metrics"]["auc"] > 0.8
    ensemble = xgb.Booster()
    ensemble.load_model(str(tmp_path / "ensemble.json"))
    assert ensemble.num_boosted_rounds() == 6  # 3 rounds x 2 nodes x 1 tree


def test_classic_api_app_keeps_node_state_and_checkpoints(tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)  # the strategy saves central.json and checkpoints here
    summary, stderr = _pollinate_run("classic_torch", tmp_path / "run")
    assert "ignores: [tool.flwr.federations.many-cores]" in stderr  # Ray's options, named once
    rounds = _rounds(summary)
    assert sorted(rounds) == [0, 1, 2, 3]
    train = {r: rounds[r]["train"] for r in (1, 2, 3)}
    assert [train[r]["ok"] for r in (1, 2, 3)] == [5, 5, 5]  # fraction-fit = 0.5 of 10 nodes
    # aggregate_fit iterated its results again after super(): 5 nodes x 64 points
    assert [train[r]["metrics"]["examples"] for r in (1, 2, 3)] == [320, 320, 320]
    # on_fit_config_fn's learning rate, echoed back in each node's JSON string metric
    assert [train[r]["metrics"]["lr"] for r in (1, 2, 3)] == [0.2, 0.2, 0.1]
    # The mod saw every message, evaluations included (all 10 nodes evaluate each round)
    for r in (1, 2, 3):
        assert train[r]["metrics"]["min_evaluated"] == train[r]["metrics"]["max_evaluated"] == r - 1
    # context.state outlived each client: 15 fits over 10 nodes, so a node trained twice
    assert train[1]["metrics"]["most_trained"] == 1
    assert max(train[r]["metrics"]["most_trained"] for r in (2, 3)) >= 2
    assert rounds[3]["server"]["central_accuracy"] > 0.8
    assert rounds[3]["evaluate"]["metrics"]["accuracy"] > 0.8  # mean_accuracy
    central = json.loads((tmp_path / "central.json").read_text())
    assert sorted(central) == ["0", "1", "2", "3"]
    assert central["3"]["central_accuracy"] == rounds[3]["server"]["central_accuracy"]
    checkpoint = torch.load(tmp_path / "checkpoint_round_3.pt")
    assert sorted(checkpoint) == ["bias", "weight"]
    with np.load(tmp_path / "run" / "model.npz") as final:  # the run's model: the last checkpoint
        np.testing.assert_array_equal(final["0"], checkpoint["weight"].numpy())
        np.testing.assert_array_equal(final["1"], checkpoint["bias"].numpy())


def test_a_strategy_written_from_scratch_runs_as_a_script(capsys):
    script = runpy.run_path(str(HERE / "scratch_strategy.py"), run_name="__main__")
    captured = capsys.readouterr()
    assert captured.out.startswith("pollinate.compat.flwr ")  # flwr.__version__
    fits = [line for line in captured.out.splitlines() if ": fit with lr=" in line]
    assert len(fits) == 30  # every one of the 10 nodes in each of 3 rounds
    assert sum(line.endswith("lr=0.2") for line in fits) == 15  # half get the larger step
    assert "round 3/3: train 10 ok, evaluate 10 ok" in captured.err
    losses = script["MEAN_LOSSES"]
    assert len(losses) == 3
    assert losses[0] > losses[1] > losses[2]
    np.testing.assert_allclose(script["FINAL"]["weights"], script["TRUE_WEIGHTS"], atol=0.2)
