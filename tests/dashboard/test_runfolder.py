"""A run folder's pages: header, charts, rounds, downloads, live reading, the runs index."""

from __future__ import annotations

import json
import os
import re

from pollinate.dashboard import folder_routes, run_routes
from pollinate.dashboard._charts import Series, line_chart, nice_ticks
from pollinate.dashboard._pages import duration, when
from pollinate.dashboard._runfolder import finite_number

from .conftest import round_line


def test_run_page_shows_header_charts_rounds_and_checkpoints(make_run, client):
    run = make_run(rounds=3)
    test = client(folder_routes(run))
    page = test.get("/")
    assert page.status_code == 200
    text = page.text
    assert "quickstart" in text and "local-simulation" in text and "finished" in text
    assert "12.50 s" in text  # wall time from run.json
    assert "learning-rate" in text  # run config
    assert f'data-live="{test.root}/fragment"' in text
    assert text.count("<svg") == 3  # accuracy, loss, round duration
    assert "<figcaption>accuracy</figcaption>" in text
    assert f'href="{test.root}/file/checkpoints/round-0003.npz"' in text
    assert f'href="{test.root}/static/dashboard.css"' in text
    assert '<td class="num">3</td>' in text  # the rounds table


def test_fragment_is_the_live_part_without_the_frame(make_run, client):
    body = client(run_routes(make_run())).get("/fragment")
    assert body.status_code == 200
    assert "<html" not in body.text and "Rounds" in body.text


def test_checkpoint_download_is_the_file(make_run, client):
    run = make_run()
    answer = client(run_routes(run)).get("/file/checkpoints/round-0002.npz")
    assert answer.status_code == 200
    assert answer.content == b"PK-fake-\x02"
    assert "attachment" in answer.headers["content-disposition"]


def test_files_outside_the_run_folder_are_refused(make_run, client, tmp_path):
    run = make_run()
    (tmp_path / "secret.npz").write_bytes(b"secret")
    os.symlink(tmp_path / "secret.npz", run / "checkpoints" / "round-0009.npz")
    test = client(run_routes(run))
    for path in (
        "/file/../secret.npz",
        "/file/%2e%2e/secret.npz",
        "/file/..%2fsecret.npz",
        f"/file/{tmp_path}/secret.npz",
        "/file/checkpoints/round-0009.npz",  # a symlink out of the folder
        "/file/run.json",  # inside, but not a kind of file the dashboard serves
    ):
        answer = test.get(path)
        assert answer.status_code == 404, path
        assert b"secret" not in answer.content
    assert "round-0009" not in test.get("/").text  # symlinks are not listed either


def test_half_written_last_line_is_left_for_the_next_read(make_run, client):
    run = make_run(rounds=2)
    with (run / "metrics.jsonl").open("a") as f:
        f.write(round_line(3, 0.8)[:25])  # a round being appended
    test = client(run_routes(run))
    text = test.get("/fragment").text
    assert '<dd id="last-round">2</dd>' in text
    assert "not rounds" not in text  # no warning for a line still being written
    with (run / "metrics.jsonl").open("a") as f:
        f.write(round_line(3, 0.8)[25:])
    assert '<dd id="last-round">3</dd>' in test.get("/fragment").text


def test_garbage_and_huge_files_give_a_note_not_a_500(make_run, client):
    run = make_run(rounds=2)
    with (run / "metrics.jsonl").open("ab") as f:
        f.write(b"\xff\xfe not json\n[1, 2]\n")
    (run / "run.json").write_bytes(b"\x00" * 10 + b"{")
    text = client(run_routes(run)).get("/").text
    assert "2 line(s) are not rounds (line 4, 5)" in text
    assert "run.json is not JSON" in text
    (run / "run.json").write_bytes(b" " * (2**20 + 1))
    answer = client(run_routes(run)).get("/")
    assert answer.status_code == 200
    assert "run.json is over 1 MiB: not read" in answer.text


def test_failure_reasons_are_listed_and_escaped(make_run, client):
    run = make_run(rounds=1)
    with (run / "metrics.jsonl").open("a") as f:
        f.write(round_line(2, 0.7, failures=["node 7: <script>alert(1)</script>"]))
    text = client(run_routes(run)).get("/").text
    assert "<script>alert(1)" not in text
    assert "train: node 7: &lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_run_folder_that_does_not_exist_yet_shows_an_empty_page(tmp_path, client):
    text = client(run_routes(tmp_path / "not-yet")).get("/").text
    assert "No rounds yet." in text and "No run.json here" in text


def test_simulated_time_gets_its_own_charts(make_run, client):
    run = make_run(rounds=0)
    with (run / "metrics.jsonl").open("a") as f:
        f.write(round_line(1, 0.6, sim=30.0) + round_line(2, 0.7, sim=75.0))
    text = client(run_routes(run)).get("/").text
    assert "Metrics against simulated time" in text
    assert "simulated time (s)" in text


def test_plots_are_shown(make_run, client):
    run = make_run()
    (run / "curves.png").write_bytes(b"\x89PNG fake")
    test = client(run_routes(run))
    assert f'<img src="{test.root}/file/curves.png"' in test.get("/").text
    image = test.get("/file/curves.png")
    assert image.headers["content-type"] == "image/png" and image.content == b"\x89PNG fake"


def test_a_compare_folder_shows_its_federated_rounds_and_its_comparison_plots(client, tmp_path):
    runs = tmp_path / "runs"
    compared = runs / "20260101-120000-0000abcd-compare"
    (compared / "federated").mkdir(parents=True)
    (compared / "confusion").mkdir()
    (compared / "comparison.json").write_text("{}")
    (compared / "curves.png").write_bytes(b"\x89PNG curves")
    (compared / "confusion" / "isolated-0.png").write_bytes(b"\x89PNG confusion")
    lines = [round_line(0, 0.1), round_line(1, 0.8), round_line(2, 0.95)]
    (compared / "federated" / "metrics.jsonl").write_text("".join(lines))
    (compared / "federated" / "model.npz").write_bytes(b"PK model")
    test = client(folder_routes(runs))
    index = test.get("/").text
    assert compared.name in index
    page = test.get(f"/runs/{compared.name}").text
    assert "A comparison (pollinate compare)" in page and '<dd id="last-round">2</dd>' in page
    for image in ("curves.png", "confusion/isolated-0.png"):
        assert f'/file/{image}"' in page
    assert test.get(f"/runs/{compared.name}/file/confusion/isolated-0.png").status_code == 200
    assert test.get(f"/runs/{compared.name}/file/federated/model.npz").content == b"PK model"


def test_a_report_comparison_folder_shows_its_plot(client, tmp_path):
    compared = tmp_path / "comparison"
    compared.mkdir()
    (compared / "comparison.png").write_bytes(b"\x89PNG runs")
    page = client(folder_routes(compared)).get("/").text
    assert "A comparison of runs" in page and '/file/comparison.png"' in page


def test_runs_folder_gets_an_index_with_each_run(make_run, client, tmp_path):
    runs = tmp_path / "runs"
    make_run("20260101-120000-00000001", parent=runs)
    make_run("20260102-120000-00000002", status="running", rounds=1, parent=runs)
    (runs / "not-a-run").mkdir()
    test = client(folder_routes(runs))
    text = test.get("/").text
    assert text.index("00000002") < text.index("00000001")  # newest first
    assert "not-a-run" not in text
    assert "running" in text and "server.accuracy=0.9" in text
    page = test.get("/runs/20260102-120000-00000002")
    assert (
        page.status_code == 200
        and f'data-live="{test.root}/runs/20260102-120000-00000002/fragment"' in page.text
    )
    assert (
        test.get("/runs/20260102-120000-00000002/file/checkpoints/round-0001.npz").status_code
        == 200
    )
    assert test.get("/runs/not-a-run").status_code == 404
    assert test.get("/runs/%2E%2E").status_code == 404
    assert "00000001" in test.get("/fragment/runs").text


def test_nice_ticks_are_round_numbers():
    assert nice_ticks(0, 10) == [0, 2.5, 5, 7.5, 10]
    assert nice_ticks(0.52, 0.91) == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert nice_ticks(3, 3) == [3, 4, 5, 6]


def test_chart_draws_axes_ticks_points_and_escapes_names():
    svg = line_chart("acc<", [Series("a&b", ((0, 0.5), (1, 0.75), (2, 1.0)))], "round", "value")
    assert "<figcaption>acc&lt;</figcaption>" in svg
    assert svg.count("<circle") == 3
    # y ticks 0.4..1.0: (0, 0.5) is at the left a sixth up, (2, 1.0) in the top right corner
    assert '<polyline class="line s0" points="58.0,184.7 252.0,106.3 446.0,28.0"/>' in svg
    assert ">a&amp;b</text>" in svg and ">round</text>" in svg and ">value</text>" in svg
    assert ">0.4</text>" in svg and ">1</text>" in svg  # y ticks
    assert "style=" not in svg  # the CSP forbids inline styles


def test_chart_without_points_says_so():
    assert line_chart("loss", [Series("train", ())], "round") == (
        '<p class="empty">loss: no values yet</p>'
    )


def test_a_long_run_is_thinned_to_a_few_hundred_points_keeping_the_last():
    points = tuple((float(i), float(i % 7)) for i in range(5001))
    svg = line_chart("loss", [Series("train", points)], "round")
    (polyline,) = re.findall(r'<polyline [^>]*points="([^"]*)"', svg)
    drawn = polyline.split(" ")
    assert 500 <= len(drawn) <= 602
    assert drawn[-1] == "381.3,153.3"  # (5000, 2) on axes 0..6000 and 0..6: the last is kept
    assert "<circle" not in svg  # no dots on a long line


def test_a_pipe_named_metrics_jsonl_is_not_read(tmp_path, client):
    os.mkfifo(tmp_path / "metrics.jsonl")  # opening it to read would wait forever
    text = client(run_routes(tmp_path)).get("/").text
    assert "metrics.jsonl is not a regular file: not read" in text


def test_an_app_folder_stands_for_its_runs(make_run, client, tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    make_run("20260101-120000-00000001", parent=tmp_path / "runs")
    test = client(folder_routes(tmp_path))
    text = test.get("/").text
    assert f'href="{test.root}/runs/20260101-120000-00000001"' in text


def test_json_nested_too_deep_is_a_note(make_run, client, tmp_path):
    runs = tmp_path / "runs"
    run = make_run(parent=runs)
    (run / "run.json").write_text("[" * 100_000)
    with (run / "metrics.jsonl").open("a") as f:
        f.write("[" * 100_000 + "\n")
    test = client(folder_routes(runs))
    assert test.get("/").status_code == 200
    text = test.get("/runs/" + run.name).text
    assert "run.json is not JSON" in text and "1 line(s) are not rounds" in text


def test_huge_and_opposite_values_draw_a_page_not_a_500(tmp_path, client):
    run = tmp_path / "huge"
    run.mkdir()
    lines = [
        {"round": 1, "wall_time_s": 1e300, "server": {"a": 1.7e308, "b": 10**400}},
        {"round": 2, "wall_time_s": float("inf"), "server": {"a": -1.7e308, "b": 1}},
        {"round": 3, "wall_time_s": 1.0, "server": {"a": 1e16, "c": 1e16}},
        {"round": 4, "wall_time_s": 1.0, "server": {"a": 1e16 + 2, "c": 1e16 + 2}},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines).replace("Infinity", "1e999")
    (run / "metrics.jsonl").write_text(text)
    test = client(run_routes(run))
    assert test.get("/").status_code == 200
    assert test.get("/fragment").status_code == 200


def test_time_filters_take_any_number():
    for value in (1e300, -1e300, float("inf"), float("nan"), 10**400):
        assert isinstance(when(value), str) and isinstance(duration(value), str)
    assert finite_number(10**400) is None and finite_number(3) == 3.0


def test_charts_are_drawn_once_per_version_of_metrics_jsonl(make_run, client, monkeypatch):
    from pollinate.dashboard import _runpages

    drawn: list[str] = []

    def counted(title: str, *args: object) -> str:
        drawn.append(title)
        return line_chart(title, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_runpages, "line_chart", counted)
    run = make_run(rounds=3)
    test = client(run_routes(run))
    test.get("/fragment")
    first = len(drawn)
    assert first == 3 and test.get("/fragment").status_code == 200 and len(drawn) == first
    with (run / "metrics.jsonl").open("a") as f:
        f.write(round_line(4, 0.95))
    assert '<dd id="last-round">4</dd>' in test.get("/fragment").text and len(drawn) == 2 * first


def test_only_the_first_metrics_are_charted_and_a_long_run_config_is_cut(tmp_path, client):
    run = tmp_path / "many"
    run.mkdir()
    metrics = {f"m{j:03d}": j for j in range(300)}
    line = {"round": 1, "wall_time_s": 1.0, "server": metrics}
    (run / "metrics.jsonl").write_text(json.dumps(line) + "\n")
    config = {f"k{i:04d}": i for i in range(250)}
    (run / "run.json").write_text(json.dumps({"status": "running", "run_config": config}))
    text = client(run_routes(run)).get("/").text
    assert "<figcaption>m011</figcaption>" in text and "m012<" not in text
    assert "run config (250 values)" in text and "k0199<" in text and "k0200<" not in text
    assert "and 50 more" in text


def test_a_symlinked_run_in_a_folder_of_runs_is_neither_listed_nor_served(
    make_run, client, tmp_path
):
    runs = tmp_path / "runs"
    make_run("20260101-120000-00000001", parent=runs)
    outside = make_run("elsewhere")
    (runs / "20260102-120000-00000002").symlink_to(outside)
    test = client(folder_routes(runs))
    assert "00000002" not in test.get("/").text
    assert test.get("/runs/20260102-120000-00000002").status_code == 404
    name = "20260102-120000-00000002/file/checkpoints/round-0001.npz"
    assert test.get("/runs/" + name).status_code == 404


def test_a_status_is_drawn_with_a_known_class_only(tmp_path, client):
    run = tmp_path / "odd"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"status": "x error big"}))
    text = client(run_routes(run)).get("/").text
    assert 'class="status other">x error big<' in text
    assert 'class="status x' not in text


def test_hostile_numbers_and_times_in_run_json_draw_a_page(tmp_path, client):
    for n, (wall, started) in enumerate(
        [(10**400, "0001-01-01T00:00:00"), (1e300, "9999-12-31T23:59:59-12:00")]
    ):
        run = tmp_path / f"r{n}"
        run.mkdir()
        info = {"status": "finished", "wall_time_s": wall, "started_at": started}
        (run / "run.json").write_text(json.dumps(info))
        (run / "metrics.jsonl").write_text(round_line(0, 0.5))
        assert client(run_routes(run)).get("/").status_code == 200
        info["status"] = "running"
        (run / "run.json").write_text(json.dumps(info))
        assert client(run_routes(run)).get("/").status_code == 200
