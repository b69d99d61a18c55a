import io
import re

from rich.console import Console

from pollinate import ArrayRecord
from pollinate.server import Failure, PhaseResult, Result, RoundRecord
from pollinate.server._progress import (
    LineView,
    TableView,
    choose_columns,
    format_duration,
    format_number,
    print_summary,
    progress_view,
)

ROUNDS = [
    RoundRecord(0, server_metrics={"loss": 2.3, "accuracy": 0.1}),
    RoundRecord(
        1,
        train=PhaseResult({"num-examples": 50, "train-loss": 1.2}, 5),
        evaluate=PhaseResult(
            {"num-examples": 50, "loss": 0.9, "accuracy": 0.7}, 4, (Failure(3, "x"),)
        ),
        server_metrics={"loss": 0.8, "accuracy": 0.75, "f1": 0.7},
        wall_time_s=0.25,
    ),
]


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, color_system=None), out


def test_columns_prefer_accuracy_and_loss_and_stay_few():
    keys = ["evaluate.f1", "evaluate.loss", "server.x", "server.accuracy", "evaluate.accuracy"]
    assert choose_columns(keys) == [
        "server.accuracy",
        "evaluate.accuracy",
        "evaluate.loss",
        "evaluate.f1",
    ]


def test_numbers_have_four_significant_digits():
    assert [format_number(v) for v in (0.9, 2.31456, 12345.0, 3.0, float("nan"))] == [
        "0.9000",
        "2.315",
        "1.234e+04",
        "3.000",
        "nan",
    ]


def test_plain_lines_per_round():
    lines: list[str] = []
    view = LineView(lines.append)
    view.status("loading")
    view.on_round(ROUNDS[0])
    view.on_round_start(1, 3)
    view.on_round(ROUNDS[1])
    assert lines == [
        "round 0 (initial model): server.accuracy=0.1000 server.loss=2.300",
        "round 1/3: train 5 ok, evaluate 4 ok 1 failed; server.accuracy=0.7500 "
        "server.loss=0.8000 evaluate.accuracy=0.7000 evaluate.loss=0.9000",
    ]


def test_table_rows_under_one_header_on_a_terminal():
    console, out = _terminal()
    view = progress_view(console)
    assert isinstance(view, TableView)
    view.status("loading the app")
    view.on_round(ROUNDS[0])
    view.on_round_start(1, 1)
    view.on_round(ROUNDS[1])
    view.on_result(Result(arrays=None, rounds=ROUNDS))  # type: ignore[arg-type]
    view.close()
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).replace("\r", "\n")
    rows = [line.rstrip() for line in screen.splitlines() if line.strip() and "━" not in line]
    assert [" ".join(row.split()) for row in rows] == [
        "round train evaluate server.accuracy server.loss evaluate.accuracy evaluate.loss time",
        "0 - - 0.1000 2.300 - - -",
        "1 5 ok 4/5 ok 0.7500 0.8000 0.7000 0.9000 0.25 s",
    ]
    assert len({len(row) for row in rows}) == 1  # aligned columns


def test_progress_view_is_plain_without_a_terminal():
    console = Console(file=io.StringIO())
    assert isinstance(progress_view(console), LineView)


def _private(record: RoundRecord) -> RoundRecord:
    train = PhaseResult({**record.train.metrics, "privacy.epsilon": 1.23456}, 5)
    return RoundRecord(1, train, record.evaluate, record.server_metrics, record.wall_time_s)


def test_a_dp_rounds_epsilon_is_on_its_line_even_with_four_other_metrics():
    lines: list[str] = []
    view = LineView(lines.append)
    view.on_round_start(1, 3)
    view.on_round(_private(ROUNDS[1]))
    assert lines == [
        "round 1/3: train 5 ok, evaluate 4 ok 1 failed; server.accuracy=0.7500 "
        "server.loss=0.8000 evaluate.accuracy=0.7000 privacy.epsilon=1.235",
    ]


def test_a_dp_rounds_epsilon_is_a_column_of_the_table():
    console, out = _terminal()
    view = progress_view(console)
    view.on_round_start(1, 1)
    view.on_round(_private(ROUNDS[1]))
    view.close()
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).replace("\r", "\n")
    rows = [line.rstrip() for line in screen.splitlines() if line.strip() and "━" not in line]
    assert " ".join(rows[0].split()).endswith("evaluate.accuracy privacy.epsilon time")
    assert " ".join(rows[1].split()).endswith("0.7000 1.235 0.25 s")


def _clocked(record: RoundRecord, at: float) -> RoundRecord:
    train, evaluate, server = record.train, record.evaluate, record.server_metrics
    return RoundRecord(record.server_round, train, evaluate, server, record.wall_time_s, at)


def test_simulated_time_is_shown_briefly_when_the_grid_keeps_it():
    assert [format_duration(t) for t in (42.0, 750.0, 11_100.0, 187_200.0)] == [
        "42.0s",
        "12m 30s",
        "3h 05m",
        "2d 4h",
    ]
    lines: list[str] = []
    view = LineView(lines.append)
    view.on_round_start(1, 3)
    view.on_round(_clocked(ROUNDS[1], 750.0))
    assert lines[0].startswith("round 1/3, sim 12m 30s: train 5 ok")
    console, out = _terminal()
    view = progress_view(console)
    view.on_round(_clocked(ROUNDS[0], 0.0))
    view.on_round_start(1, 1)
    view.on_round(_clocked(ROUNDS[1], 750.0))
    view.close()
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).replace("\r", "\n")
    rows = [line.rstrip() for line in screen.splitlines() if line.strip() and "━" not in line]
    assert " ".join(rows[0].split()).endswith("evaluate.loss time sim")
    assert " ".join(rows[2].split()).endswith("0.9000 0.25 s 12m 30s")
    assert len({len(row) for row in rows}) == 1


def test_the_summary_says_the_simulated_time():
    console, out = _terminal()
    rounds = [_clocked(ROUNDS[0], 0.0), _clocked(ROUNDS[1], 11_100.0)]
    print_summary(console, Result(ArrayRecord(), rounds), 1.5)
    assert "Finished 1 round in 0.25 s (1.50 s with start-up), 3h 05m simulated" in out.getvalue()
