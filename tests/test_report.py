import json

import matplotlib.image
import pytest

from pollinate.errors import ConfigError
from pollinate.report import (
    DEFAULT_TARGETS,
    compare_runs,
    load_history,
    metric_series,
    privacy_lines,
    run_labels,
    seconds_text,
    simulated_times,
    write_report,
)


def round_line(server_round, accuracy, with_train=True):
    metrics = {"num-examples": 30, "train-loss": 1 / max(server_round, 1)}
    return {
        "round": server_round,
        "wall_time_s": 0.1,
        "train": {"ok": 3, "failed": 0, "metrics": metrics} if with_train else None,
        "evaluate": None,
        "server": {"accuracy": accuracy, "loss": 1 - accuracy},
    }


@pytest.fixture
def run_dir(tmp_path):
    accuracies = {1: 0.3, 2: 0.6, 3: 0.9}
    lines = [round_line(0, 0.1, with_train=False)]
    lines += [round_line(r, accuracy) for r, accuracy in accuracies.items()]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = {"run_id": 7, "status": "finished", "app": {"name": "demo"}, "run_config": {"lr": 0.1}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    return tmp_path


def test_series_group_metrics_by_name_and_phase(run_dir):
    series = metric_series(load_history(run_dir))
    assert series["accuracy"]["server"] == [(0, 0.1), (1, 0.3), (2, 0.6), (3, 0.9)]
    assert series["train-loss"]["train"][0] == (1, 1.0)
    assert "num-examples" not in series


def test_report_writes_a_png_and_a_self_contained_page(run_dir):
    files = write_report(run_dir)
    assert files.curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(files.curves).shape
    assert width > 500 and height > 300
    page = files.html.read_text()
    assert "data:image/png;base64," in page and "demo" in page
    assert "<th>server.accuracy</th>" in page and "<td>0.9</td>" in page
    assert "<td>lr</td><td>0.1</td>" in page


def test_odd_files_a_link_or_a_hand_wrote_still_make_a_report(run_dir):
    run = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**run, "run_config": ["not", "a", "table"]}))
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    odd = json.loads(lines[1])
    odd["train"] = {"ok": 3, "metrics": "none"}  # no 'failed', metrics not a table
    lines[1] = json.dumps(odd)
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    page = write_report(run_dir).html.read_text()
    assert "<td>3/?</td>" in page and "<td>lr</td>" not in page


def test_a_folder_without_metrics_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"metrics\.jsonl does not exist"):
        write_report(tmp_path)


def test_a_corrupt_metrics_line_is_a_clear_error(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"round": 1}\n{oops\n')
    with pytest.raises(ConfigError, match="line 2 is not JSON"):
        load_history(tmp_path)


def test_a_dp_run_folder_says_the_epsilon_it_spent(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for record in lines[1:]:
        epsilon = 0.97 * record["round"]  # the cumulative epsilon a DP strategy reports
        record["train"]["metrics"].update({"privacy.epsilon": epsilon, "privacy.delta": 1e-5})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert privacy_lines(load_history(run_dir)) == [
        ("privacy", "epsilon 2.91 at delta 1e-05 after 3 rounds")
    ]
    page = write_report(run_dir).html.read_text()
    assert "<td>privacy</td><td>epsilon 2.91 at delta 1e-05 after 3 rounds</td>" in page
    assert "<th>train.privacy.epsilon</th>" in page  # and its curve, round by round


def test_a_run_folder_without_dp_has_no_privacy_line(run_dir):
    assert privacy_lines(load_history(run_dir)) == []
    assert "privacy" not in write_report(run_dir).html.read_text()


def test_a_run_with_simulated_time_gets_its_curves_against_it(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for record in lines:
        record["simulated_time_s"] = 1800.0 * record["round"]  # half an hour a round
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    history = load_history(run_dir)
    assert simulated_times(history) == {0: 0.0, 1: 1800.0, 2: 3600.0, 3: 5400.0}
    files = write_report(run_dir)
    assert files.curves_time == run_dir / "curves-time.png"
    assert files.curves_time.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = files.html.read_text()
    assert page.count("data:image/png;base64,") == 2 and "against simulated time" in page
    assert "<th>simulated s</th>" in page and "<td>5400</td>" in page


def test_simulated_time_is_plotted_in_a_readable_unit(run_dir, monkeypatch):
    import matplotlib.axes

    labels = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_xlabel", lambda ax, text: labels.append(text))
    from pollinate.report import curves_figure

    series = metric_series(load_history(run_dir))
    for span, unit in ((90.0, "s"), (1800.0, "min"), (10_800.0, "h"), (4 * 86_400.0, "days")):
        labels.clear()
        curves_figure(series, "t", {0: 0.0, 3: span})
        assert set(labels) == {f"simulated time ({unit})"}


def test_a_run_without_simulated_time_has_one_set_of_curves(run_dir):
    from click.testing import CliRunner

    from pollinate.cli._main import cli

    assert write_report(run_dir).curves_time is None
    assert not (run_dir / "curves-time.png").exists()
    out = CliRunner().invoke(cli, ["report", str(run_dir)], catch_exceptions=False).output
    assert "curves:" in out and "simulated time" not in out


def test_the_report_command_names_the_simulated_time_curves(run_dir):
    from click.testing import CliRunner

    from pollinate.cli._main import cli

    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for record in lines:
        record["simulated_time_s"] = 60.0 * record["round"]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = CliRunner().invoke(cli, ["report", str(run_dir)], catch_exceptions=False).output
    assert "curves against simulated time:" in out and "curves-time.png" in out


def write_run(folder, accuracies, run_config, app="demo", times=None):
    """A hand-written run folder: a server accuracy (and loss) per round, round 0 first."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for server_round, accuracy in enumerate(accuracies):
        line = round_line(server_round, accuracy, with_train=server_round > 0)
        if times is not None:
            line["simulated_time_s"] = times[server_round]
        lines.append(line)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = {"run_id": 1, "status": "finished", "app": {"name": app}, "run_config": run_config}
    (folder / "run.json").write_text(json.dumps(run))
    return folder


@pytest.fixture
def two_runs(tmp_path):
    """FedAvg: 10 s a round; FedBuff: 2 s a version, more versions, reaching 0.8 sooner."""
    fedavg = write_run(
        tmp_path / "runs" / "a",
        [0.1, 0.5, 0.7, 0.82, 0.86],
        {"strategy": "fedavg", "seed": 0, "lr": 0.1},
        times=[0.0, 10.0, 20.0, 30.0, 40.0],
    )
    fedbuff = write_run(
        tmp_path / "runs" / "b",
        [0.1, 0.3, 0.6, 0.81, 0.79, 0.9, 0.91],
        {"strategy": "fedbuff", "seed": 0, "lr": 0.1},
        times=[0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 70.5],
    )
    return fedavg, fedbuff


def test_runs_are_labelled_by_the_config_values_that_differ(two_runs, tmp_path):
    assert run_labels(list(two_runs)) == {
        two_runs[0]: "strategy=fedavg",
        two_runs[1]: "strategy=fedbuff",
    }
    same = write_run(tmp_path / "c", [0.1, 0.2], {"strategy": "fedavg", "seed": 0, "lr": 0.1})
    labels = run_labels([two_runs[0], same])
    assert labels == {two_runs[0]: "a", same: "c"}  # nothing differs: the folders' names


def test_runs_of_different_apps_are_labelled_with_the_app(two_runs, tmp_path):
    other = write_run(tmp_path / "q", [0.1, 0.2], {"strategy": "fedavg", "epochs": 2}, app="qs")
    labels = run_labels([two_runs[0], other])
    assert labels == {two_runs[0]: "demo", other: "qs"}  # strategy is the same in both
    many = run_labels([two_runs[0], two_runs[1], other])
    assert many[two_runs[1]] == "demo strategy=fedbuff" and many[other] == "qs strategy=fedavg"


def test_identical_labels_are_told_apart_by_their_folders(two_runs, tmp_path):
    again = write_run(tmp_path / "d", [0.1, 0.2], {"strategy": "fedbuff", "seed": 0, "lr": 0.1})
    labels = run_labels([*two_runs, again])
    assert labels[two_runs[0]] == "strategy=fedavg"
    assert labels[two_runs[1]] == "strategy=fedbuff (b)" and labels[again] == "strategy=fedbuff (d)"


def test_a_comparison_reports_when_each_run_first_reached_each_target(two_runs, tmp_path):
    comparison = compare_runs(two_runs, tmp_path / "out", targets=(0.8, 0.85, 0.95))
    assert comparison.against_time and comparison.target_metric == "server.accuracy"
    assert comparison.metrics == ["server.accuracy", "server.loss"]
    fedavg, fedbuff = comparison.runs
    assert fedavg.reached("server.accuracy", 0.8) == (3, 30.0)
    assert fedbuff.reached("server.accuracy", 0.8) == (3, 6.0)
    assert fedbuff.reached("server.accuracy", 0.85) == (5, 10.0)  # not the dip at version 4
    assert fedbuff.reached("server.loss", 0.15) == (5, 10.0)  # a loss reaches a target downwards
    header, rows = comparison.table()
    assert header == [
        "run",
        "rounds",
        "simulated time",
        "final server.accuracy",
        "final server.loss",
        "to 0.8",
        "to 0.85",
        "to 0.95",
    ]
    assert rows[0][:5] == ["strategy=fedavg", "4", "40.0s", "0.86", "0.14"]
    assert rows[0][5:] == ["30.0s (round 3)", "40.0s (round 4)", "never"]
    assert rows[1][1:3] == ["6", "1m 10.5s"] and rows[1][5:] == [
        "6.0s (round 3)",
        "10.0s (round 5)",
        "never",
    ]


def test_a_comparison_writes_a_plot_and_a_self_contained_page(two_runs, tmp_path):
    comparison = compare_runs(two_runs, tmp_path / "new" / "out")
    assert comparison.plot == tmp_path / "new" / "out" / "comparison.png"
    assert comparison.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert comparison.targets == DEFAULT_TARGETS
    page = comparison.html.read_text()
    assert page.count("data:image/png;base64,") == 1 and "against simulated time" in page
    assert "<td>strategy=fedbuff</td>" in page and "<th>to 0.9</th>" in page
    assert "<td>10.0s (round 5)</td>" in page


def test_runs_without_a_clock_are_compared_by_round(two_runs, tmp_path):
    plain = write_run(tmp_path / "plain", [0.2, 0.9], {"strategy": "fedavg", "seed": 1, "lr": 0.1})
    comparison = compare_runs([two_runs[1], plain], tmp_path)
    assert not comparison.against_time
    assert comparison.notes == ["no simulated time in plain: the runs are compared by round"]
    header, rows = comparison.table()
    assert rows[1][:3] == ["strategy=fedavg seed=1", "1", "-"]
    assert rows[1][header.index("to 0.8")] == "round 1"
    assert "Curves against round." in comparison.html.read_text()


def test_a_run_without_rounds_is_skipped_with_a_note(two_runs, tmp_path):
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "metrics.jsonl").write_text("")
    comparison = compare_runs([*two_runs, failed], tmp_path)
    assert len(comparison.runs) == 2
    assert comparison.notes == [
        f"skipped {failed}: its metrics.jsonl has no rounds (the run failed before its first round)"
    ]
    with pytest.raises(ConfigError, match="needs two runs with rounds and 1 of the 2 given"):
        compare_runs([two_runs[0], failed], tmp_path)


def test_comparison_errors_name_the_problem(two_runs, tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere/metrics\.jsonl does not exist"):
        compare_runs([two_runs[0], tmp_path / "nowhere"], tmp_path)
    with pytest.raises(ConfigError, match="given twice"):
        compare_runs([two_runs[0], two_runs[0]], tmp_path)
    with pytest.raises(ConfigError, match=r"they have: server\.accuracy, server\.loss"):
        compare_runs(two_runs, tmp_path, metric="evaluate.accuracy")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        compare_runs(two_runs, tmp_path / "file")


def test_targets_without_an_accuracy_need_a_metric(tmp_path):
    runs = []
    for name in ("x", "y"):
        folder = write_run(tmp_path / name, [0.5, 0.6], {"strategy": name})
        lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        for line in lines:
            line["server"] = {"loss": line["server"]["loss"]}
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        runs.append(folder)
    assert compare_runs(runs, tmp_path).target_metric is None  # no accuracy: no targets
    with pytest.raises(ConfigError, match=r"name the metric with --metric \(every run has: server"):
        compare_runs(runs, tmp_path, targets=(0.5,))
    by_loss = compare_runs(runs, tmp_path, targets=(0.45,), metric="server.loss")
    assert by_loss.runs[0].reached("server.loss", 0.45) == (1, None)


def test_a_single_run_page_says_its_total_simulated_time(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for record in lines:
        record["simulated_time_s"] = 24.9 * record["round"]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    page = write_report(run_dir).html.read_text()
    assert "<td>simulated time</td><td>1m 14.7s</td>" in page


def test_simulated_times_are_written_to_a_tenth_of_a_second():
    assert [seconds_text(s) for s in (21.24, 59.96, 74.7, 3725.0)] == [
        "21.2s",
        "1m 00.0s",
        "1m 14.7s",
        "1h 02m",
    ]
