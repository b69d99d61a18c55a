"""``pollinate run --federation NAME``, ``ls``, ``log`` and ``stop`` against a live link."""

import json

import pytest
from click.testing import CliRunner

from pollinate.cli._main import cli

from .submitted import write_app


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def app_with_link(tmp_path, link_port):
    """An app whose federation ``prod`` is a live plain-text link with two bare nodes."""
    return write_app(tmp_path / "app", port=link_port)


def test_run_submits_the_app_follows_its_log_and_ls_and_log_show_it(app_with_link):
    app = app_with_link
    result = _invoke("run", app, "--federation", "prod", "--follow", "--run-config", "step=3")
    assert result.exit_code == 0, result.output
    assert "submitted to prod" in result.output and "round 2: train 2 ok" in result.output
    assert "finished" in result.output
    listed = _invoke("ls", "--app", app, "--federation", "prod", "--json")
    (run,) = json.loads(listed.stdout)
    assert (run["status"], run["rounds_done"], run["run_config"]["step"]) == ("finished", 2, 3.0)
    log = _invoke("log", str(run["run_id"])[:6], "--app", app)  # prod is not the default:
    assert log.exit_code == 1 and "is a simulation federation" not in log.output
    log = _invoke("log", str(run["run_id"])[:6], "--app", app, "--federation", "prod")
    assert "round 1:" in log.stdout and "finished after 2 round(s)" in log.stdout
    table = _invoke("ls", "--app", app, "--federation", "prod")
    assert str(run["run_id"]) in table.output and "finished" in table.output


def test_a_run_that_is_stopped_ends_its_follower_with_exit_code_1(app_with_link):
    app = app_with_link
    submitted = _invoke(
        "run", app, "prod", "--json", "--run-config", "num-server-rounds=200 sleep-s=0.1"
    )
    run_id = json.loads(submitted.stdout.splitlines()[-1])["run_id"]
    stopped = _invoke("stop", run_id, "--app", app, "--federation", "prod")
    assert stopped.exit_code == 0
    assert f"run {run_id} is stopping" in stopped.output or "is stopped" in stopped.output
    followed = _invoke("log", run_id, "--follow", "--app", app, "--federation", "prod")
    assert followed.exit_code == 1 and f"run {run_id} stopped" in followed.output


def test_an_unreachable_link_and_a_missing_federation_are_one_line_errors(tmp_path):
    app = write_app(tmp_path / "app", port=1)
    result = _invoke("ls", "--app", app, "--federation", "prod")
    assert result.exit_code == 1 and "no link answers at 127.0.0.1:1" in result.output
    result = _invoke("ls", "--app", tmp_path / "nowhere")
    assert "does not exist; or name the link itself: --link HOST:PORT" in result.output
    result = _invoke("run", app, "prod", "--out", tmp_path / "out")
    assert "--out is for simulations" in result.output
