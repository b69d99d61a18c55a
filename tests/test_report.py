import json

import matplotlib.image
import pytest

from pollinate.errors import ConfigError
from pollinate.report import (
    load_history,
    metric_series,
    privacy_lines,
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
    from pollinate.report import _plot_curves

    series = metric_series(load_history(run_dir))
    for span, unit in ((90.0, "s"), (1800.0, "min"), (10_800.0, "h"), (4 * 86_400.0, "days")):
        labels.clear()
        _plot_curves(series, run_dir / "t.png", "t", {0: 0.0, 3: span})
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
