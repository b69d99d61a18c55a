"""run_simulation shows its rounds and a summary on stderr unless verbose=False."""

import logging
import threading

import numpy as np
import pytest
from rich.console import Console
from rich.live import _RefreshThread

from pollinate import FedAvg, NumPyClient, run_simulation
from pollinate.server._progress import LineView, progress_view

from .fixture_apps import noisy
from .test_run_simulation import fedavg_app


@pytest.fixture(autouse=True)
def _plain_stderr(monkeypatch):
    """stderr is captured (no terminal); no variable in the environment says otherwise."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


class _Client(NumPyClient):
    def get_parameters(self, config):
        return [np.zeros(2, np.float32)]

    def fit(self, parameters, config):
        return [parameters[0] + 1], 4, {}


def _classic(evaluate_fn, **kwargs):
    return run_simulation(
        client_fn=lambda context: _Client(),
        strategy=FedAvg(fraction_evaluate=0.0),
        num_rounds=3,
        num_nodes=2,
        evaluate_fn=evaluate_fn,
        **kwargs,
    )


def test_verbose_writes_a_line_per_round_and_a_summary(capsys):
    run_simulation(fedavg_app(num_rounds=3), noisy, num_nodes=4)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == ""
    assert [line.split(":")[0] for line in lines[:3]] == ["round 1/3", "round 2/3", "round 3/3"]
    assert lines[0].startswith("round 1/3: train 2 ok, evaluate -")
    assert lines[3].startswith("Finished 3 rounds in ")
    assert lines[-1].split() == ["model", "2", "arrays,", "15", "values", "(60", "bytes)"]


def test_the_summary_lists_final_metrics_key_ones_first(capsys):
    _classic(lambda server_round, arrays: {"accuracy": server_round / 4, "loss": 1.0})
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("round 0 (initial model): server.accuracy=0.000 ")
    assert [line.split()[:2] for line in lines[-3:]] == [
        ["server.accuracy", "0.7500"],
        ["server.loss", "1.000"],
        ["model", "1"],
    ]


def test_verbose_false_writes_nothing(capsys):
    run_simulation(fedavg_app(num_rounds=2), noisy, num_nodes=4, verbose=False)
    assert capsys.readouterr() == ("", "")


def _fail_in_round_2(server_round, arrays):
    if server_round == 2:
        raise RuntimeError("evaluation broke")
    return {"accuracy": 0.5}


def test_a_failing_run_still_closes_the_live_view(monkeypatch, capsys):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # a terminal: the table under a progress bar
    with pytest.raises(RuntimeError, match="evaluation broke"):
        _classic(_fail_in_round_2)
    refreshing = [t for t in threading.enumerate() if isinstance(t, _RefreshThread)]
    assert all(thread.done.is_set() for thread in refreshing)  # told to stop
    err = capsys.readouterr().err
    assert err.rindex("\x1b[?25h") > err.rindex("\x1b[?25l")  # the cursor is back
    assert "server.accuracy" in err  # the rows held back were printed
    assert "Finished" not in err


def test_warnings_show_when_logging_is_not_configured(monkeypatch, capsys):
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # pytest's own are gone
    pollinate_logger = logging.getLogger("pollinate")
    before = list(pollinate_logger.handlers)

    def warn(server_round, arrays):
        logging.getLogger("pollinate.strategy").warning("round %d: something odd", server_round)
        logging.getLogger("pollinate.strategy").info("not shown")

    _classic(warn)
    err = capsys.readouterr().err
    assert "warning: round 1: something odd" in err
    assert "not shown" not in err
    assert pollinate_logger.handlers == before
    assert logging.getLogger().handlers == []


def test_configured_logging_is_left_alone(caplog, capsys):
    caplog.set_level(logging.WARNING, logger="pollinate")

    def warn(server_round, arrays):
        logging.getLogger("pollinate.strategy").warning("odd")

    _classic(warn)
    assert "odd" not in capsys.readouterr().err
    assert [r.getMessage() for r in caplog.records] == ["odd"] * 4  # rounds 0 to 3


def test_jupyter_gets_plain_lines_rich_prints_into_the_cell():
    assert isinstance(progress_view(Console(force_jupyter=True)), LineView)
