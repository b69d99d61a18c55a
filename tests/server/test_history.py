"""A run's files: metrics.jsonl stays strict JSON whatever the metrics hold."""

import json
import math

import pytest

from pollinate import FedAvg, run_simulation

from ..simulation.fixture_apps import initial_arrays, noisy


def strict(text: str) -> object:
    """Parse ``text`` as JSON proper: NaN and Infinity are not JSON."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_metrics_jsonl_is_strict_json_with_non_finite_values_written_as_null(tmp_path):
    def evaluate(server_round, arrays):
        return {"loss": math.inf, "nan": math.nan, "fine": 1.5, "neg": -math.inf}

    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2)
    app = strategy.as_server_app(1, initial_arrays(), evaluate_fn=evaluate)
    result = run_simulation(app, noisy, num_nodes=2, out_dir=tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert strict(line)["server"] == {"loss": None, "nan": None, "fine": 1.5, "neg": None}
    assert math.isinf(result.rounds[0].server_metrics["loss"])  # the Result keeps the value


def test_a_line_that_cannot_be_json_is_refused_not_written(tmp_path):
    from pollinate.server._history import write_jsonl_line

    with pytest.raises(TypeError):
        write_jsonl_line(tmp_path / "m.jsonl", {"x": object()})
    write_jsonl_line(tmp_path / "m.jsonl", {"x": [math.nan, {"y": math.inf}], "z": 2})
    assert strict((tmp_path / "m.jsonl").read_text()) == {"x": [None, {"y": None}], "z": 2}


def test_a_result_prints_as_a_short_summary_not_a_dump():
    import numpy as np

    from pollinate import ArrayRecord
    from pollinate.server import PhaseResult, Result, RoundRecord

    rounds = [
        RoundRecord(0, server_metrics={"accuracy": 0.1}),
        RoundRecord(1, train=PhaseResult({"num-examples": 30, "loss": 0.51234}, num_ok=3)),
        RoundRecord(2, server_metrics={"accuracy": 0.95}),
    ]
    result = Result(ArrayRecord({"w": np.zeros(1000), "b": np.zeros(10)}), rounds)
    text = repr(result)
    assert text.startswith("Result(2 rounds, 2 arrays of 8,080 bytes")
    assert "server.accuracy=0.95" in text and "num-examples" not in text and len(text) < 200


def test_simulated_time_goes_to_metrics_jsonl_only_when_kept_and_comes_back(tmp_path):
    from pollinate.server import PhaseResult, Result, RoundRecord
    from pollinate.server._history import write_jsonl_line

    clocked = RoundRecord(
        2, PhaseResult({"loss": 0.5}, 3), wall_time_s=0.25, simulated_time_s=750.5
    )
    unclocked = RoundRecord(1, PhaseResult({"loss": 0.7}, 3), wall_time_s=0.25)
    for record in (unclocked, clocked):
        write_jsonl_line(tmp_path / "metrics.jsonl", record.to_json())
    lines = [strict(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "simulated_time_s" not in lines[0] and lines[1]["simulated_time_s"] == 750.5
    assert [RoundRecord.from_json(line) for line in lines] == [unclocked, clocked]
    assert Result(initial_arrays(), [unclocked, clocked]).simulated_time_s == 750.5
    assert Result(initial_arrays(), [unclocked]).simulated_time_s is None
