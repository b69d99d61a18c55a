"""A link's pages through a fake LinkView: runs, nodes, Stop, escaping."""

from __future__ import annotations

import pytest

from pollinate.dashboard import link_routes

from .fake_link import FakeFailure, FakeNode, example_view, summary


def _csrf(test) -> str:
    keys = test.server.keys
    return keys.csrf(keys.session_of(test.cookies[test.server.keys.cookie]))


def test_overview_lists_runs_with_status_config_and_errors(client):
    test = client(link_routes(example_view()))
    text = test.get("/").text
    for status in ("finished", "failed", "running", "queued"):
        assert f'<span class="status {status}">{status}</span>' in text
    assert "round 4 train: 0 valid replies" in text
    assert "<code>learning-rate=0.05</code>" in text
    assert text.count('class="stop"') == 2  # running and queued: the others are over
    assert f'data-live="{test.root}/fragment/link"' in text
    assert f'action="{test.root}/runs/13/stop"' in text


def test_overview_lists_nodes_with_state_tasks_and_failures(client):
    text = client(link_routes(example_view())).get("/fragment/link").text
    assert "<html" not in text
    assert text.count("status connected") == 2 and text.count("status disconnected") == 1
    assert "CUDA out of memory" in text and "task timed out after 60 s (3)" in text
    assert "<code>partition-id=2</code>" in text
    assert "ago)" in text


@pytest.mark.parametrize("stopped", ["\u00b2", "\u0661\u0662", "9" * 4400, "-1", "<b>"])
def test_a_stopped_notice_is_shown_for_a_plain_run_id_only(client, stopped):
    test = client(link_routes(example_view()))
    answer = test.get("/", params={"stopped": stopped})
    assert answer.status_code == 200 and "stop asked" not in answer.text


def test_stop_with_csrf_calls_the_view(client):
    view = example_view()
    test = client(link_routes(view))
    answer = test.post("/runs/13/stop", data={"csrf": _csrf(test)})
    assert answer.status_code == 200
    assert view.stopped == [13]
    assert "run 13: stop asked" in answer.text


def test_stop_without_csrf_is_refused(client):
    view = example_view()
    test = client(link_routes(view))
    assert test.post("/runs/13/stop").status_code == 403
    assert test.post("/runs/13/stop", data={"csrf": "x" * 64}).status_code == 403
    assert test.get("/runs/13/stop").status_code == 405
    assert view.stopped == []


def test_stop_refused_by_the_link_shows_its_message(client):
    view = example_view()
    view.refuse = "only the operator may stop runs"
    test = client(link_routes(view))
    answer = test.post("/runs/13/stop", data={"csrf": _csrf(test)})
    assert answer.status_code == 409
    assert "run 13 was not stopped: only the operator may stop runs" in answer.text


def test_hostile_node_and_run_text_is_escaped(client):
    evil = "<script>alert('x')</script>"
    view = example_view()
    view.node_list = [FakeNode(5, failures=(FakeFailure(0.0, 1, evil),), node_config={evil: evil})]
    view.run_list = [summary(1, evil, name=evil, error=evil, run_config={evil: evil})]
    text = client(link_routes(view)).get("/").text
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text


def test_run_page_shows_its_folder_when_readable(client, make_run):
    view = example_view()
    view.dirs[13] = make_run(status="running")
    test = client(link_routes(view))
    page = test.get("/runs/13")
    assert page.status_code == 200 and f'data-live="{test.root}/runs/13/fragment"' in page.text
    assert "<figcaption>accuracy</figcaption>" in page.text
    assert test.get("/runs/13/file/checkpoints/round-0001.npz").status_code == 200
    elsewhere = test.get("/runs/11")
    assert "not readable from here" in elsewhere.text
    assert test.get("/runs/99").status_code == 404


def test_a_huge_failure_reason_is_cut(client):
    view = example_view()
    view.node_list = [FakeNode(5, failures=(FakeFailure(0.0, 1, "x" * 100_000),))]
    text = client(link_routes(view)).get("/").text
    assert "x" * 590 in text and "x" * 700 not in text


def test_each_page_asks_the_link_for_its_runs_once(client, make_run):
    view = example_view()
    view.dirs[13] = make_run(status="running")
    test = client(link_routes(view))
    for path in ("/", "/fragment/link", "/runs/13", "/runs/13/fragment", "/runs/11"):
        view.asked = 0
        assert test.get(path).status_code == 200
        assert view.asked == 1, path


def test_long_run_and_node_configs_are_cut(client):
    view = example_view()
    config = {f"k{i:04d}": i for i in range(250)}
    view.run_list = [summary(1, "running", run_config=config)]
    view.node_list = [FakeNode(5, node_config=config)]
    text = client(link_routes(view)).get("/").text
    assert "k0199=" in text and "k0200=" not in text
    assert text.count("and 50 more") == 2


def test_hostile_times_from_a_link_draw_the_pages(client):
    view = example_view()
    odd = (1e300, -1e300, float("inf"), float("nan"))
    view.node_list = [
        FakeNode(i, last_seen=t, failures=(FakeFailure(t, 1, "x"),)) for i, t in enumerate(odd)
    ]
    view.run_list = [
        summary(i, "finished", submitted_at=t, started_at=t, ended_at=t) for i, t in enumerate(odd)
    ]
    test = client(link_routes(view))
    assert test.get("/").status_code == 200
    assert test.get("/runs/0").status_code == 200
