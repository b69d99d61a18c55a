"""``pollinate dashboard`` and ``pollinate run --dashboard``."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from pollinate.cli import _dashboard, _run
from pollinate.dashboard import DashboardServer
from pollinate.deploy import ControlLinkView


@pytest.fixture(autouse=True)
def lingered(monkeypatch) -> list[bool]:
    """Each time ``run --dashboard`` serves on after its run, recorded instead of waited."""
    calls: list[bool] = []
    monkeypatch.setattr(_dashboard, "linger", lambda: calls.append(True))
    return calls


@pytest.fixture
def started(monkeypatch) -> list[DashboardServer]:
    """The dashboard servers the command starts, in order."""
    servers: list[DashboardServer] = []
    start = DashboardServer.start

    def recorded(self: DashboardServer) -> None:
        start(self)
        servers.append(self)

    monkeypatch.setattr(DashboardServer, "start", recorded)
    return servers


@contextlib.contextmanager
def _logged_in(server: DashboardServer) -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=True, timeout=10) as browser:
        assert browser.get(server.login_url).status_code == 200
        yield browser


def _read_front_page_then_interrupt(monkeypatch, module, started) -> list[str]:
    """Instead of waiting for Ctrl-C, ``module`` reads the dashboard's front page, then stops."""
    pages: list[str] = []

    def wait() -> None:
        with _logged_in(started[0]) as browser:
            pages.append(browser.get(started[0].url + "/").text)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "wait_for_interrupt", wait)
    return pages


def test_dashboard_serves_a_runs_folder_until_ctrl_c(make_app, invoke, started, monkeypatch):
    app_dir = make_app()
    assert invoke("run", app_dir, "--json").exit_code == 0
    pages = _read_front_page_then_interrupt(monkeypatch, _dashboard, started)
    result = invoke("dashboard", app_dir / "runs")
    assert result.exit_code == 0, result.output
    assert f"dashboard: open {started[0].login_url}" in result.stderr
    assert "dashboard stopped" in result.stderr
    (run_dir,) = (app_dir / "runs").iterdir()
    assert run_dir.name in pages[0] and "finished" in pages[0]


def test_dashboard_of_a_missing_folder_is_a_usage_error(invoke, tmp_path):
    result = invoke("dashboard", tmp_path / "nope")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_run_dashboard_serves_the_run_folder_while_it_runs(
    make_app, invoke, started, monkeypatch, lingered
):
    seen: list[str] = []
    execute = _run.execute

    def watched(plan, stderr):  # type: ignore[no-untyped-def]
        with _logged_in(started[0]) as browser:
            seen.append(browser.get(started[0].url + "/fragment").text)  # before any round
            outcome = execute(plan, stderr)
            seen.append(browser.get(started[0].url + "/fragment").text)
        return outcome

    monkeypatch.setattr(_run, "execute", watched)
    result = invoke("run", make_app(), "--dashboard", "--json")
    assert result.exit_code == 0, result.output
    assert lingered == [True]  # open pages get one more refresh after the end
    assert "No rounds yet." in seen[0]
    assert '<dd id="last-round">2</dd>' in seen[1]
    assert result.stderr.index("dashboard: open http://127.0.0.1:") < result.stderr.index(
        "dashboard stops with the run"
    )
    assert len(result.stdout.strip().splitlines()) == 1  # --json keeps stdout to its line


def test_port_needs_dashboard(make_app, invoke):
    result = invoke("run", make_app(), "--port", "8050")
    assert result.exit_code == 1 and "--port is the dashboard's: add --dashboard" in result.stderr


def test_the_cli_does_not_import_the_dashboard_until_asked():
    script = """
import sys
from pollinate.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
web = ("starlette", "uvicorn", "jinja2")
print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in web))
"""
    process = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert process.stdout.strip().splitlines()[-1] == "LOADED []", process.stderr


def test_run_dashboard_port_in_use_is_one_clear_error(make_app, invoke):
    with DashboardServer([]) as taken:
        result = invoke("run", make_app(), "--dashboard", "--port", str(taken.port))
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{taken.port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_dashboard_needs_a_run_folder_or_a_link_but_not_both(invoke, tmp_path):
    neither = invoke("dashboard")
    assert neither.exit_code == 1 and "give a run folder" in neither.stderr
    both = invoke("dashboard", tmp_path, "--link", "127.0.0.1:1", "--insecure")
    assert both.exit_code == 1 and "not both" in both.stderr
    runs_dir = invoke("dashboard", tmp_path, "--runs-dir", tmp_path)
    assert runs_dir.exit_code == 1 and "--runs-dir goes with a link" in runs_dir.stderr


def test_dashboard_of_a_link_reads_it_through_control(invoke, started, monkeypatch, tmp_path):
    from pollinate.deploy import serve_link

    from ..deploy.submitted import start_bare_nodes

    pages = _read_front_page_then_interrupt(monkeypatch, _dashboard, started)
    views: list[ControlLinkView] = []
    monkeypatch.setattr(
        "pollinate.deploy.ControlLinkView",
        lambda client, runs_dir: views.append(ControlLinkView(client, runs_dir)) or views[-1],
    )
    ports: list[int] = []
    with serve_link("127.0.0.1:0", insecure=True, on_listening=ports.append) as runs:
        runs.start()
        (node,) = start_bare_nodes(ports[0], 1, tmp_path / "cache")
        while not runs.link.connected_nodes():
            node.join(0.05)
        address = f"127.0.0.1:{ports[0]}"
        result = invoke("dashboard", "--link", address, "--insecure", "--runs-dir", tmp_path)
    node.join(10)
    assert result.exit_code == 0, result.output
    assert f"dashboard: open {started[0].login_url}" in result.stderr
    assert re.search(r"open http://127\.0\.0\.1:\d+/d/[0-9a-f]{32}/login\?token=", result.stderr)
    assert views[0]._runs_dir == tmp_path.resolve()
    assert "No runs yet" in pages[0] and "partition-id=0" in pages[0] and "connected" in pages[0]


def test_dashboard_of_a_link_out_of_reach_is_one_error_before_serving(invoke, started):
    result = invoke("dashboard", "--link", "127.0.0.1:1", "--insecure")
    assert result.exit_code == 1 and not started
    assert "127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr


def test_link_dashboard_serves_the_link_s_runs_and_nodes(invoke, started, monkeypatch):
    from pollinate.cli import _deploy

    pages = _read_front_page_then_interrupt(monkeypatch, _deploy, started)
    result = invoke("link", "--insecure", "--address", "127.0.0.1:0", "--dashboard", "0")
    assert f"dashboard: open {started[0].login_url}" in result.stderr
    assert "/d/" in started[0].login_url
    assert "interrupted" in result.stderr
    assert "No runs yet" in pages[0] and "No node has connected yet" in pages[0]


def test_link_dashboard_host_goes_with_dashboard(invoke):
    result = invoke("link", "--insecure", "--dashboard-host", "0.0.0.0")
    assert result.exit_code == 1 and "goes with --dashboard PORT" in result.stderr


def test_run_dashboard_on_a_deployed_federation_names_the_command_that_watches_it(make_app, invoke):
    federations = '[tool.pollinate.federations.prod]\naddress = "127.0.0.1:1"\ninsecure = true\n'
    app_dir = make_app(federations=federations)
    result = invoke("run", app_dir, "prod", "--dashboard")
    assert result.exit_code == 1
    assert f"pollinate dashboard --app {app_dir} --federation prod" in result.stderr
