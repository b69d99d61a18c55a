"""``pollinate run`` of an app with central DP: epsilon per round, and a clean budget stop."""

import json
import sys
import textwrap

import pytest
from click.testing import CliRunner

from pollinate.cli._main import cli

CLIENT = """
from pollinate import ArrayRecord, ClientApp, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(msg, context):
    new = {k: a.numpy() + context.node_id for k, a in msg.content.arrays().items()}
    metrics = MetricRecord({"num-examples": 10})
    return msg.reply(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}))
"""

SERVER = """
import numpy as np

from pollinate import ArrayRecord, FedAvg, ServerApp
from pollinate.privacy import dp_fixed_clip
from pollinate.strategy import chain

app = ServerApp()


@app.main()
def main(grid, context):
    piece = dp_fixed_clip(1.0, 1.0, max_epsilon=context.run_config["budget"], seed=0)
    strategy = FedAvg(fraction_train=0.5, fraction_evaluate=0.0, aggregation=chain(piece))
    return strategy.start(
        grid, ArrayRecord({"w": np.zeros(3)}), num_rounds=context.run_config["rounds"]
    )
"""


@pytest.fixture
def app_dir(tmp_path):
    """A tiny DP app, forgotten again after the test (its package is imported in-process)."""
    package = f"dp_app_{tmp_path.name.replace('-', '_')}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "client_app.py").write_text(textwrap.dedent(CLIENT))
    (tmp_path / package / "server_app.py").write_text(textwrap.dedent(SERVER))
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "{package}"\n\n[tool.pollinate.app.components]\n'
        f'serverapp = "{package}.server_app:app"\nclientapp = "{package}.client_app:app"\n\n'
        "[tool.pollinate.app.config]\nrounds = 3\nbudget = 100.0\n\n"
        '[tool.pollinate.federations]\ndefault = "sim"\n\n'
        "[tool.pollinate.federations.sim]\nnum-nodes = 8\n"
    )
    path = list(sys.path)
    yield tmp_path
    sys.path[:] = path
    for name in [n for n in sys.modules if n.startswith(package)]:
        del sys.modules[name]


def _run(app_dir, *args):
    result = CliRunner().invoke(cli, ["run", str(app_dir), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_pollinate_run_reports_epsilon_each_round_in_json_and_metrics_jsonl(app_dir, tmp_path):
    out = tmp_path / "out"
    result = _run(app_dir, "--json", "--out", str(out))
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    epsilons = [r["train"]["metrics"]["privacy.epsilon"] for r in summary["rounds"] if r["train"]]
    assert len(epsilons) == 3 and epsilons == sorted(epsilons)
    assert summary["final"]["train.privacy.epsilon"] == epsilons[-1]
    assert (out / "metrics.jsonl").read_text().count("privacy.epsilon") == 3


def test_a_spent_budget_ends_the_run_cleanly_with_one_line(app_dir):
    result = _run(app_dir, "--json", "--run-config", "rounds=10 budget=5.0")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [r["round"] for r in summary["rounds"]] == [1, 2]  # a third would pass epsilon 5
    assert "privacy budget max_epsilon=5 " in result.stderr
    assert "Traceback" not in result.output
    reason = summary["stop_reason"]
    assert reason.startswith("the run ended before round 3 of 10: the privacy budget")

    shown = _run(app_dir, "--run-config", "rounds=10 budget=5.0").stdout
    assert f"Stopped early: {reason}" in shown
    out_dir = app_dir / "runs" / summary["out_dir"].rsplit("/", 1)[-1]
    run_file = json.loads((out_dir / "run.json").read_text())
    assert run_file["status"] == "finished" and run_file["stop_reason"] == reason
    report = CliRunner().invoke(cli, ["report", str(out_dir)], catch_exceptions=False)
    assert f"stopped early: {reason}" in report.stdout.splitlines()


def test_a_run_that_ran_all_its_rounds_has_no_stop_reason(app_dir):
    summary = json.loads(_run(app_dir, "--json").stdout.strip().splitlines()[-1])
    assert "stop_reason" not in summary
