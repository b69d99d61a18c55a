"""The dashboard in a real browser: headless Chromium loads the pages of a running simulation
and of a link (a fake LinkView), sees them update without a reload, and keeps a screenshot
of each page in POLLINATE_TEST_ARTIFACTS (default: tests/.artifacts)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from pollinate import ArrayRecord, ClientApp, FedAvg, MetricRecord, RecordDict, ServerApp
from pollinate.dashboard import DashboardServer, folder_routes, link_routes, run_routes
from pollinate.server import RoundRecord, RunObserver
from pollinate.simulation import run_simulation

from .fake_link import example_view

pytestmark = pytest.mark.slow

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ROUNDS = 6
PAUSE_AFTER = 3
"""The simulation stops after this round until the test has seen it in the browser."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "headless browser tests need chromium and chromedriver (apt install chromium "
            "chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(
        os.environ.get("POLLINATE_TEST_ARTIFACTS") or Path(__file__).parents[1] / ".artifacts"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _screenshot(driver: Any, path: Path) -> None:
    """The whole page: the viewport is made as tall as the page first."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    metrics = {"width": 1280, "height": min(max(int(height), 300), 4000)}
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {**metrics, "deviceScaleFactor": 1, "mobile": False}
    )
    driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _text(driver: Any, selector: str) -> str:
    """The element's text, read in one step (the live refresh replaces elements any time)."""
    script = "var e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : ''"
    return str(driver.execute_script(script, selector))


def _count(driver: Any, selector: str) -> int:
    return int(
        driver.execute_script("return document.querySelectorAll(arguments[0]).length", selector)
    )


def _alert(driver: Any) -> Any:
    """The page's confirm() question, once it shows."""
    return WebDriverWait(driver, 5).until(expected_conditions.alert_is_present())


def _wait_for(driver: Any, selector: str, text: str) -> None:
    WebDriverWait(driver, 15, poll_frequency=0.1).until(
        lambda d: _text(d, selector) == text,
        message=f"{selector} never showed {text!r} (it shows {_text(driver, selector)!r})",
    )


class _Gate(RunObserver):
    """Tells the test each round as it ends; holds the run after PAUSE_AFTER until opened."""

    def __init__(self) -> None:
        self.paused = threading.Event()
        self.go_on = threading.Event()

    def on_round(self, record: RoundRecord) -> None:
        if record.server_round == PAUSE_AFTER:
            self.paused.set()
            self.go_on.wait(60)


def _apps() -> tuple[ServerApp, ClientApp]:
    """A small numpy federation whose loss falls and accuracy rises; node 3 fails round 2."""
    client = ClientApp()

    @client.train()
    def train(msg: Any, context: Any) -> Any:
        server_round = msg.content["config"]["server-round"]
        if context.node_id == 3 and server_round == 2:
            raise RuntimeError("CUDA out of memory <while allocating 2.00 GiB>")
        arrays = msg.content["arrays"]
        new = {k: a.numpy() + 0.1 for k, a in arrays.items()}
        loss = 1.0 / server_round + 0.05 * context.node_id
        metrics = MetricRecord({"num-examples": 100, "loss": loss})
        return msg.reply(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}))

    @client.evaluate()
    def evaluate(msg: Any, context: Any) -> Any:
        w = float(msg.content["arrays"]["w"].numpy().mean())
        metrics = MetricRecord({"num-examples": 50, "accuracy": min(0.5 + w, 0.97)})
        return msg.reply(RecordDict({"metrics": metrics}))

    server = ServerApp()

    @server.main()
    def main(grid: Any, context: Any) -> Any:
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=1)
        return strategy.start(
            grid,
            ArrayRecord({"w": np.zeros((4, 4), np.float32)}),
            num_rounds=ROUNDS,
            evaluate_fn=lambda r, arrays: {
                "accuracy": min(0.4 + 0.09 * r, 0.97),
                "loss": 2.0 / (r + 1),
            },
        )

    return server, client


def _run_json(out: Path, status: str) -> None:
    """The run.json ``pollinate run`` writes (run_simulation alone writes none)."""
    info = {
        "run_id": 3054,
        "status": status,
        "error": None,
        "app": {"name": "dashboard-demo", "serverapp": "demo:server", "clientapp": "demo:client"},
        "federation": {"name": "local-simulation", "num_nodes": 4, "backend": "inline"},
        "run_config": {"num-server-rounds": ROUNDS, "learning-rate": 0.1},
        "started_at": "2026-12-06T12:00:00+00:00",
        "wall_time_s": 4.2,
    }
    (out / "run.json").write_text(json.dumps(info))


def _finished_run(runs: Path, name: str, accuracy: float, learning_rate: float) -> None:
    """An earlier run's folder, as ``pollinate run`` leaves it."""
    out = runs / name
    out.mkdir(parents=True)
    _run_json(out, "finished")
    info = json.loads((out / "run.json").read_text())
    info["run_config"]["learning-rate"] = learning_rate
    info["final"] = {"server.accuracy": accuracy, "server.loss": 0.29}
    (out / "run.json").write_text(json.dumps(info))
    lines = [
        {"round": r, "wall_time_s": 0.4, "server": {"accuracy": accuracy * r / ROUNDS}}
        for r in range(ROUNDS + 1)
    ]
    (out / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_run_page_follows_a_running_simulation(browser, artifacts, tmp_path):
    runs = tmp_path / "runs"
    _finished_run(runs, "20261205-093012-7f3a91c2", 0.91, 0.05)
    _finished_run(runs, "20261205-101544-02bd5e17", 0.87, 0.2)
    out = runs / "20261206-120000-00000bee"
    out.mkdir(parents=True)
    _run_json(out, "running")
    gate = _Gate()
    server_app, client_app = _apps()
    outcome: dict[str, Any] = {}

    def simulate() -> None:
        outcome["result"] = run_simulation(
            server_app, client_app, num_nodes=4, out_dir=out, observers=[gate], verbose=False
        )

    simulation = threading.Thread(target=simulate, daemon=True)
    with DashboardServer(folder_routes(runs), title="demo/runs") as server:
        simulation.start()
        try:
            assert gate.paused.wait(60), "the simulation never reached its pause"
            browser.get(server.login_url)  # the runs index
            _wait_for(browser, "table.runs tbody tr:first-child td.num", str(PAUSE_AFTER))
            _screenshot(browser, artifacts / "dashboard-runs.png")
            browser.find_element(By.LINK_TEXT, out.name).click()
            _wait_for(browser, "#last-round", str(PAUSE_AFTER))
            assert _count(browser, "table.rounds tbody tr") == PAUSE_AFTER + 1
            assert _count(browser, "svg[aria-label=accuracy] circle.s0") == PAUSE_AFTER + 1
            browser.find_element(By.CSS_SELECTOR, "details summary").click()  # the run config
            browser.execute_script("window.notReloaded = true")
        finally:
            gate.go_on.set()
        simulation.join(60)
        assert "result" in outcome, "the simulation did not finish"
        _run_json(out, "finished")
        _wait_for(browser, "#last-round", str(ROUNDS))  # refreshed in place, not reloaded
        assert browser.execute_script("return window.notReloaded") is True
        assert browser.execute_script("return document.querySelector('details').open") is True
        _wait_for(browser, ".status", "finished")
        assert _count(browser, "table.rounds tbody tr") == ROUNDS + 1
        assert "CUDA out of memory <while allocating" in browser.page_source.replace("&lt;", "<")
        assert _count(browser, "svg[aria-label=accuracy] circle.s0") == ROUNDS + 1  # server
        assert _count(browser, "svg[aria-label=accuracy] circle.s1") == ROUNDS  # evaluate
        _screenshot(browser, artifacts / "dashboard-run.png")


def test_link_page_updates_and_stops_a_run(browser, artifacts):
    view = example_view()
    with DashboardServer(link_routes(view), title="link 127.0.0.1:9092") as server:
        browser.get(server.login_url)
        _wait_for(browser, "table.runs tbody tr:nth-child(2) td:nth-child(4)", "4")
        browser.execute_script("window.notReloaded = true")
        view.run_list = [replace(r, rounds_done=5) if r.run_id == 13 else r for r in view.run_list]
        _wait_for(browser, "table.runs tbody tr:nth-child(2) td:nth-child(4)", "5")
        assert browser.execute_script("return window.notReloaded") is True
        _screenshot(browser, artifacts / "dashboard-link-fake.png")
        stop = f"form[action='{server.keys.prefix}/runs/13/stop'] button"
        browser.find_element(By.CSS_SELECTOR, stop).click()
        question = _alert(browser)
        assert "Stop run 13" in question.text
        question.dismiss()  # asked first: a dismissed question stops nothing
        assert view.stopped == []
        browser.find_element(By.CSS_SELECTOR, stop).click()
        _alert(browser).accept()
        _wait_for(browser, "p.notice", "run 13: stop asked")
        assert view.stopped == [13]
        assert browser.current_url.endswith("/?stopped=13")  # a reload posts nothing again


def test_a_real_link_s_page_follows_its_run_and_nodes_and_stops_it(browser, artifacts, tmp_path):
    """A link with two bare nodes, watched as `pollinate dashboard --link` does (Control)."""
    from pollinate.deploy import ControlClient, ControlLinkView, serve_link

    from ..deploy.submitted import start_bare_nodes, write_app
    from ..deploy.test_control import _submission

    app_dir = write_app(tmp_path / "app")
    ports: list[int] = []
    with serve_link(
        "127.0.0.1:0", insecure=True, runs_dir=tmp_path / "runs", on_listening=ports.append
    ) as runs:
        runs.start()
        nodes = start_bare_nodes(ports[0], 2, tmp_path / "cache")
        with ControlClient(f"127.0.0.1:{ports[0]}", None) as client:
            # A first run fails on both nodes, with markup in its reason ...
            failing = client.submit(_submission(app_dir, step="<b>not a number</b>"))
            list(client.logs(str(failing.run_id), follow=True))
            # ... and the second one is followed, then stopped.
            config = {"num-server-rounds": 200, "sleep-s": 0.05}
            run = client.submit(_submission(app_dir, **config))
            view = ControlLinkView(client)
            with DashboardServer(link_routes(view), title=f"link 127.0.0.1:{ports[0]}") as server:
                browser.get(server.login_url)
                row = "table.runs tbody tr:first-child"
                WebDriverWait(browser, 30, poll_frequency=0.1).until(
                    lambda d: _text(d, f"{row} td:nth-child(4)") not in ("", "0", "1"),
                    message="the run's rounds never showed",
                )
                seen = int(_text(browser, f"{row} td:nth-child(4)"))
                browser.execute_script("window.notReloaded = true")
                WebDriverWait(browser, 30, poll_frequency=0.1).until(
                    lambda d: int(_text(d, f"{row} td:nth-child(4)") or 0) > seen + 1,
                    message="the rounds done never moved on the page",
                )
                assert browser.execute_script("return window.notReloaded") is True
                assert _count(browser, "table.nodes tbody tr") == 2
                assert _text(browser, "table.nodes tbody tr:first-child .status") == "connected"
                failures = _text(browser, "table.nodes td.reasons")
                assert "'<b>not a number</b>'" in failures  # shown as text, not as markup
                assert _count(browser, "table.nodes td.reasons b") == 0
                _screenshot(browser, artifacts / "dashboard-link.png")
                browser.find_element(
                    By.CSS_SELECTOR,
                    f"form[action='{server.keys.prefix}/runs/{run.run_id}/stop'] button",
                ).click()
                _alert(browser).accept()
                _wait_for(browser, "p.notice", f"run {run.run_id}: stop asked")
                _wait_for(browser, f"{row} .status", "stopped")
            assert {r.run_id: r.status for r in view.runs()}[run.run_id] == "stopped"
    for node in nodes:
        node.join(timeout=10)


class _CookieCatcher(http.server.BaseHTTPRequestHandler):
    """Another local user's server: it keeps the Cookie header the browser sends it."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Cookie"))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hi")

    def log_message(self, *args: object) -> None:
        """Quiet."""


def test_the_session_cookie_is_not_sent_to_another_port(browser):
    """Browsers share cookies across a host's ports: the cookie's Path (the secret prefix) keeps
    it from a server on another port of 127.0.0.1; the page's stylesheet loads under it."""
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CookieCatcher)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with DashboardServer(link_routes(example_view())) as server:
            browser.get(server.login_url)
            _wait_for(browser, "table.runs tbody tr:nth-child(2) td:nth-child(4)", "4")
            assert browser.current_url == server.url + "/"
            brand = browser.find_element(By.CSS_SELECTOR, "a.brand")
            assert brand.value_of_css_property("text-decoration-line") == "none"  # CSS loaded
            browser.get(f"http://127.0.0.1:{other.server_address[1]}/")
            browser.get(f"http://127.0.0.1:{other.server_address[1]}{server.keys.prefix}x/")
    finally:
        other.shutdown()
        other.server_close()
    assert len(_CookieCatcher.seen) >= 2 and set(_CookieCatcher.seen) == {None}  # + favicons


class _PortSquatter(http.server.BaseHTTPRequestHandler):
    """Another local user's server on the port a stopped dashboard freed."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b'<iframe id="evil" src="/evil.html"></iframe>')

    def log_message(self, *args: object) -> None:
        """Quiet."""


def test_a_tab_stops_refreshing_when_its_server_is_gone(browser, make_run):
    """After the dashboard stops, whatever answers on its port is not put into the page."""
    server = DashboardServer(run_routes(make_run(status="running")))
    with server:
        browser.get(server.login_url)
        _wait_for(browser, "#last-round", "3")
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    squatter = http.server.ThreadingHTTPServer(("127.0.0.1", server.port), _PortSquatter)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    try:
        _wait_for(browser, ".live-status", "disconnected: reload to try again")
        assert _count(browser, "#evil") == 0 and _text(browser, "#last-round") == "3"
    finally:
        squatter.shutdown()
        squatter.server_close()


def test_a_tab_whose_session_is_gone_says_to_log_in_again(browser, make_run):
    with DashboardServer(run_routes(make_run(status="running"))) as server:
        browser.get(server.login_url)
        _wait_for(browser, "#last-round", "3")
        browser.delete_all_cookies()
        _wait_for(browser, ".live-status", "logged out: open the login URL again")
