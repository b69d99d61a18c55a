"""The population model: distributions, availability, dropout, traces, config tables."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from pollinate.errors import ConfigError
from pollinate.simulation import _population
from pollinate.simulation._population import (
    Always,
    Bandwidth,
    Bernoulli,
    Constant,
    Device,
    Diurnal,
    LogNormal,
    Pareto,
    PopulationModel,
)

HOUR = 3600.0
HEADER = "node,speed,download_bps,upload_bps,availability\n"


def write_trace(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


# ---- defaults and distributions ----------------------------------------------------------


def test_default_model_is_everyone_at_speed_one_free_and_always_available() -> None:
    pop = PopulationModel().build(5)
    assert pop.num_nodes == 5
    assert pop.seconds_per_example is None
    assert pop.device(3) == Device(1.0, math.inf, math.inf)
    assert pop.available_nodes(123.0) == range(1, 6)
    assert pop.available_until(2, 50.0) == math.inf
    assert pop.next_available(7.0, 5) == 7.0
    assert pop.next_available(7.0, 6) == math.inf
    assert pop.dropout_at(1, 0) is None


def test_lognormal_speeds_have_the_stated_median_and_sigma() -> None:
    pop = PopulationModel(speed=LogNormal(median=2.0, sigma=0.7)).build(100_000)
    logs = np.log([pop.device(i).speed for i in range(1, 100_001)])
    assert math.exp(float(np.median(logs))) == pytest.approx(2.0, rel=0.02)
    assert float(np.std(logs)) == pytest.approx(0.7, rel=0.02)


def test_pareto_has_a_heavy_tail_of_slow_nodes_and_a_bounded_fast_end() -> None:
    alpha = 1.5
    speeds = Pareto(median=1.0, alpha=alpha).sample(np.random.default_rng(0), 100_000)
    assert float(np.median(speeds)) == pytest.approx(1.0, rel=0.03)
    assert float(speeds.max()) <= 2 ** (1 / alpha)
    ten_times_slower = float(np.mean(speeds < 0.1))
    assert ten_times_slower == pytest.approx((2 ** (-1 / alpha) / 10) ** alpha, rel=0.15)


def test_default_bandwidth_is_a_few_megabytes_per_second() -> None:
    pop = PopulationModel(bandwidth=Bandwidth()).build(20_000)
    down = np.median([pop.device(i).download_bps for i in range(1, 20_001)])
    up = np.median([pop.device(i).upload_bps for i in range(1, 20_001)])
    assert down == pytest.approx(5e6, rel=0.05)
    assert up == pytest.approx(1e6, rel=0.05)


def test_same_model_gives_the_same_population_and_node_values_ignore_the_node_count() -> None:
    model = PopulationModel(
        speed=LogNormal(), bandwidth=Bandwidth(), availability=Diurnal(8), seed=4
    )
    small, big, again = model.build(10), model.build(1000), model.build(1000)
    assert [small.device(i) for i in range(1, 11)] == [big.device(i) for i in range(1, 11)]
    assert [big.device(i) for i in range(1, 1001)] == [again.device(i) for i in range(1, 1001)]
    assert list(big.available_nodes(5 * HOUR)) == list(again.available_nodes(5 * HOUR))
    other = PopulationModel(speed=LogNormal(), seed=5).build(10)
    assert [other.device(i) for i in range(1, 11)] != [small.device(i) for i in range(1, 11)]


def test_a_node_id_outside_the_population_is_refused() -> None:
    pop = PopulationModel().build(3)
    with pytest.raises(ValueError, match=r"outside 1\.\.3"):
        pop.device(4)
    with pytest.raises(ValueError):
        pop.dropout_at(0, 0)


# ---- availability ------------------------------------------------------------------------


def test_bernoulli_extremes() -> None:
    never = PopulationModel(availability=Bernoulli(0.0, 60)).build(50)
    assert list(never.available_nodes(10.0)) == []
    assert never.next_available(0.0, 1) == math.inf
    assert never.available_until(3, 10.0) == 10.0
    always = PopulationModel(availability=Bernoulli(1.0, 60)).build(50)
    assert always.available_nodes(10.0) == range(1, 51)
    assert always.available_until(3, 10.0) == math.inf
    assert always.next_available(4.0, 50) == 4.0


def test_bernoulli_is_redrawn_each_period_at_rate_p() -> None:
    pop = PopulationModel(availability=Bernoulli(0.3, 60.0), seed=1).build(100_000)
    first, same_period, next_period = (pop.available_nodes(t) for t in (0.0, 59.9, 60.0))
    assert first == same_period
    assert first != next_period
    assert len(first) / 100_000 == pytest.approx(0.3, abs=0.01)


def test_bernoulli_available_until_is_the_first_period_the_node_is_away() -> None:
    pop = PopulationModel(availability=Bernoulli(0.8, 10.0), seed=2).build(20)
    node = pop.available_nodes(5.0)[0]
    until = pop.available_until(node, 5.0)
    assert until % 10.0 == 0 and until > 5.0
    assert node not in pop.available_nodes(until)
    assert all(node in pop.available_nodes(t) for t in np.arange(5.0, until, 10.0))


def test_bernoulli_next_available_is_the_first_period_with_enough_nodes() -> None:
    pop = PopulationModel(availability=Bernoulli(0.5, 10.0), seed=3).build(40)
    counts = [len(pop.available_nodes(10.0 * k)) for k in range(200)]
    need = max(counts[1:])
    expected = 10.0 * (1 + counts[1:].index(need))
    assert pop.next_available(10.0, need) == expected
    assert pop.next_available(3.0, counts[0]) == 3.0
    assert pop.next_available(0.0, 41) == math.inf
    big = PopulationModel(availability=Bernoulli(0.5, 10.0)).build(100_000)
    assert big.next_available(0.0, 60_000) == math.inf


def test_diurnal_hand_made_window() -> None:
    model = PopulationModel(availability=Diurnal(hours_per_day=8, start_hour=22, spread_hours=0))
    pop = model.build(4)
    assert list(pop.available_nodes(23 * HOUR)) == [1, 2, 3, 4]
    assert list(pop.available_nodes(22 * HOUR)) == [1, 2, 3, 4]
    assert list(pop.available_nodes(5.5 * HOUR)) == [1, 2, 3, 4]
    assert list(pop.available_nodes(6 * HOUR)) == []
    assert list(pop.available_nodes(12 * HOUR)) == []
    assert pop.available_until(2, 23 * HOUR) == 30 * HOUR
    assert pop.available_until(2, 12 * HOUR) == 12 * HOUR
    assert pop.next_available(12 * HOUR, 4) == 22 * HOUR
    assert pop.next_available(23 * HOUR, 4) == 23 * HOUR
    assert pop.next_available(0.0, 5) == math.inf


def test_diurnal_start_hours_spread_around_start_hour() -> None:
    model = PopulationModel(availability=Diurnal(8, start_hour=22, spread_hours=4), seed=2)
    pop = model.build(10_000)
    assert list(pop.available_nodes(19.99 * HOUR)) == []  # starts are 20:00-24:00
    assert pop.available_nodes(24 * HOUR) == list(range(1, 10_001))  # ends are 04:00-08:00
    assert list(pop.available_nodes(8 * HOUR)) == []
    assert 0.4 < len(pop.available_nodes(22 * HOUR)) / 10_000 < 0.6


def test_diurnal_all_day_is_always() -> None:
    pop = PopulationModel(availability=Diurnal(hours_per_day=24)).build(7)
    assert pop.available_nodes(1234.0) == range(1, 8)
    assert pop.available_until(1, 0.0) == math.inf


def test_diurnal_spread_over_the_day_keeps_the_stated_fraction_available() -> None:
    pop = PopulationModel(availability=Diurnal(hours_per_day=6), seed=7).build(100_000)
    for t in (0.0, 7 * HOUR, 30 * HOUR):
        assert len(pop.available_nodes(t)) / 100_000 == pytest.approx(0.25, abs=0.01)


def test_diurnal_next_available_is_the_first_moment_with_enough_nodes() -> None:
    pop = PopulationModel(availability=Diurnal(4, start_hour=20, spread_hours=6), seed=9).build(300)
    t = 8 * HOUR
    tau = pop.next_available(t, 200)
    assert t < tau < t + 24 * HOUR
    assert len(pop.available_nodes(tau)) >= 200
    before = np.arange(t, tau, 60.0)
    assert all(len(pop.available_nodes(s)) < 200 for s in before)
    node = pop.available_nodes(tau)[0]
    assert pop.available_until(node, tau) > tau


def test_the_scalar_hash_draws_the_same_bits_as_the_vectorized_one() -> None:
    nodes = np.array([1, 2, 99_999, 2**40], dtype=np.int64)
    counters = np.array([0, -3, 7, 2**62], dtype=np.int64)
    for seed in (0, 1, 2**63 + 5):
        expected = _population._uniform(seed, 6, nodes, counters)
        got = [
            _population._uniform_one(seed, 6, int(n), int(c))
            for n, c in zip(nodes, counters, strict=True)
        ]
        assert got == expected.tolist()


# ---- dropout -----------------------------------------------------------------------------


def test_dropout_is_keyed_by_seed_node_and_task_only() -> None:
    model = PopulationModel(dropout=0.1, seed=11)
    a, b = model.build(100), model.build(5)
    forward = [a.dropout_at(3, i) for i in range(500)]
    backward = [b.dropout_at(3, i) for i in reversed(range(500))][::-1]
    assert forward == backward
    other_seed = PopulationModel(dropout=0.1, seed=12).build(5)
    assert forward != [other_seed.dropout_at(3, i) for i in range(500)]


def test_dropout_rate_and_fractions() -> None:
    pop = PopulationModel(dropout=0.1, seed=0).build(1000)
    draws = [pop.dropout_at(n, i) for n in range(1, 1001) for i in range(100)]
    fractions = [f for f in draws if f is not None]
    assert len(fractions) / len(draws) == pytest.approx(0.1, abs=0.005)
    assert all(0.0 <= f < 1.0 for f in fractions)
    assert float(np.mean(fractions)) == pytest.approx(0.5, abs=0.02)


def test_seconds_per_example_is_carried() -> None:
    assert PopulationModel(seconds_per_example=0.01).build(2).seconds_per_example == 0.01


# ---- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: LogNormal(sigma=-1.0), "sigma"),
        (lambda: LogNormal(median=0.0), "median"),
        (lambda: Pareto(alpha=0.0), "alpha"),
        (lambda: Constant(math.nan), "Constant"),
        (lambda: Bernoulli(1.5), "p must be between 0 and 1"),
        (lambda: Bernoulli(-0.1), "p must be between 0 and 1"),
        (lambda: Bernoulli(0.5, period_s=0.0), "period_s"),
        (lambda: Bernoulli(0.5, period_s=1e-300), "period_s must be at least 0.001"),
        (lambda: LogNormal(sigma=300.0), "sigma must be .* at most 3"),
        (lambda: Pareto(alpha=0.9), "Pareto alpha must be"),
        (lambda: Bernoulli(0.5, period_s=1e300), "period_s must be at most"),
        (lambda: Pareto(alpha=0.01), "alpha must be at least 1"),
        (lambda: Diurnal(hours_per_day=0), "hours_per_day"),
        (lambda: Diurnal(hours_per_day=25), "hours_per_day"),
        (lambda: Diurnal(start_hour=24), "start_hour"),
        (lambda: PopulationModel(dropout=1.0), "dropout"),
        (lambda: PopulationModel(dropout=-0.1), "dropout"),
        (lambda: PopulationModel(seconds_per_example=0.0), "seconds_per_example"),
        (lambda: PopulationModel(seed=-1), "seed"),
        (lambda: PopulationModel().build(0), "num_nodes"),
    ],
)
def test_each_bad_argument_is_one_config_error(make: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("model", "words"),
    [
        (PopulationModel(speed=Constant(1e-12)), "speed of node 1 is 1e-12"),
        (PopulationModel(speed=Constant(math.inf)), "speed of node 1 is inf"),
        (PopulationModel(speed=Pareto(1e-8, 1.0)), "speed of node 4 is 8.69724e-10"),
        (PopulationModel(speed=LogNormal(1e-8, 3.0)), "speed of node 2 is"),
        (
            PopulationModel(bandwidth=Bandwidth(Constant(1e-10), Constant(1.0))),
            "download_bps of node 1 is 1e-10",
        ),
    ],
)
def test_a_drawn_speed_or_bandwidth_out_of_range_is_one_config_error(
    model: PopulationModel, words: str
) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        model.build(40_000)
    assert "must be finite and at least 1e-09" in str(caught.value)


def test_a_drawn_infinite_bandwidth_is_free() -> None:
    pop = PopulationModel(bandwidth=Bandwidth(LogNormal(1e307, 3.0), Constant(1.0))).build(100)
    assert math.inf in {pop.device(n).download_bps for n in range(1, 101)}


def test_a_tiny_trace_repetition_is_refused(tmp_path: Path) -> None:
    path = write_trace(tmp_path, "1,1,1,1,\n")
    with pytest.raises(ConfigError, match=r"repeat_s must be at least 0\.001"):
        PopulationModel.from_trace(path, repeat_s=1e-300)


# ---- traces ------------------------------------------------------------------------------


def test_trace_rows_become_devices_and_intervals(tmp_path: Path) -> None:
    path = write_trace(
        tmp_path,
        "2,0.5,2e6,1e6,0-3600;7200-10800\n1,1.0,inf,inf,\n3,2,5e6,5e5,100-200;200-300;400-inf\n",
    )
    pop = PopulationModel.from_trace(path, seed=1).build(3)
    assert pop.device(2) == Device(0.5, 2e6, 1e6)
    assert pop.device(1) == Device(1.0, math.inf, math.inf)
    assert list(pop.available_nodes(0.0)) == [1, 2]
    assert list(pop.available_nodes(250.0)) == [1, 2, 3]
    assert list(pop.available_nodes(350.0)) == [1, 2]
    assert list(pop.available_nodes(3600.0)) == [1, 3]
    assert list(pop.available_nodes(7200.0)) == [1, 2, 3]
    assert pop.available_until(1, 5.0) == math.inf
    assert pop.available_until(2, 7300.0) == 10800.0
    assert pop.available_until(3, 150.0) == 300.0  # touching intervals merge
    assert pop.available_until(3, 350.0) == 350.0
    assert pop.available_until(3, 500.0) == math.inf
    assert pop.next_available(0.0, 2) == 0.0
    assert pop.next_available(0.0, 3) == 100.0
    assert pop.next_available(300.0, 3) == 400.0
    assert pop.next_available(3600.0, 3) == 7200.0
    assert pop.next_available(0.0, 4) == math.inf


def test_a_trace_uses_its_first_nodes_and_refuses_a_run_bigger_than_it(tmp_path: Path) -> None:
    path = write_trace(tmp_path, "1,1,1,1,\n2,2,2,2,10-20\n3,3,3,3,\n")
    model = PopulationModel.from_trace(path)
    pop = model.build(2)
    assert pop.device(2).speed == 2.0
    assert list(pop.available_nodes(0.0)) == [1]
    assert list(model.build(3).available_nodes(15.0)) == [1, 2, 3]
    with pytest.raises(
        ConfigError, match=r"has 3 nodes but the run has 4; run with num-nodes <= 3"
    ):
        model.build(4)


def test_a_repeating_trace_recurs_and_wraps_around(tmp_path: Path) -> None:
    path = write_trace(tmp_path, "1,1,1,1,0-10;90-100\n2,1,1,1,20-30\n3,1,1,1,\n4,1,1,1,0-100\n")
    pop = PopulationModel.from_trace(path, repeat_s=100.0).build(4)
    assert list(pop.available_nodes(95.0)) == [1, 3, 4]
    assert list(pop.available_nodes(105.0)) == [1, 3, 4]
    assert list(pop.available_nodes(110.0)) == [3, 4]
    assert list(pop.available_nodes(225.0)) == [2, 3, 4]
    assert pop.available_until(1, 5.0) == 10.0
    assert pop.available_until(1, 95.0) == 110.0
    assert pop.available_until(1, 195.0) == 210.0
    assert pop.available_until(2, 225.0) == 230.0
    assert pop.available_until(4, 50.0) == math.inf
    assert pop.next_available(12.0, 3) == 20.0
    assert pop.next_available(35.0, 3) == 90.0
    assert pop.next_available(195.0, 3) == 195.0
    assert pop.next_available(215.0, 3) == 220.0
    assert pop.next_available(0.0, 4) == math.inf


def test_a_repeating_trace_keeps_its_intervals_within_the_repetition(tmp_path: Path) -> None:
    path = write_trace(tmp_path, "1,1,1,1,0-10\n2,1,1,1,90-inf\n")
    with pytest.raises(ConfigError, match=r"line 3: availability interval '90-inf' ends after"):
        PopulationModel.from_trace(path, repeat_s=100.0)
    with pytest.raises(ConfigError, match=r"repeat_s must be at least 0\.001"):
        PopulationModel.from_trace(path, repeat_s=0.0)
    with pytest.raises(ConfigError, match="set trace too"):
        PopulationModel.from_config({"trace-repeat-s": 86400})


def test_an_all_always_trace_with_a_byte_order_mark_answers_a_range(tmp_path: Path) -> None:
    path = write_trace(tmp_path, "1,1,1,1,\n\n2,1,1,1,\n", header="\ufeff" + HEADER)
    assert PopulationModel.from_trace(path).build(2).available_nodes(9.0) == range(1, 3)


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("1,1,1,1\n", 2, "the row has 4 fields; each row needs 5"),
        ("1,1,1,1,\n²,1,1,1,\n", 3, "node is '²'"),
        ("1,1,1,1,\n" + "9" * 5000 + ",1,1,1,\n", 3, "node is '99999"),
        ("1,-1,1,1,\n", 2, "speed is '-1'"),
        ("1,nan,1,1,\n", 2, "speed is 'nan'"),
        ("1,inf,1,1,\n", 2, "speed must be a finite number >= 1e-09"),
        ("1,1,fast,1,\n", 2, "download_bps is 'fast'"),
        ("1,1,1,0,\n", 2, "upload_bps"),
        ("1,1,1,1,\n0,1,1,1,\n", 3, "node is '0'"),
        ("1,1,1,1,\nx,1,1,1,\n", 3, "node is 'x'"),
        ("1,1,1,1,\n1,1,1,1,\n", 3, "node 1 appears again .first on line 2."),
        ("1,1,1,1,0-100;50-200\n", 2, "overlaps"),
        ("1,1,1,1,100-200;0-50\n", 2, "precedes"),
        ("1,1,1,1,200-100\n", 2, "not start-end"),
        ("1,1,1,1,nan-100\n", 2, "not start-end"),
        ("1,1,1,1,0-nan\n", 2, "not start-end"),
        ("1,1,1,1,5\n", 2, "not start-end"),
        ("1,1e-320,1,1,\n", 2, "speed is '1e-320'; speed must be a finite number >= 1e-09"),
        ("1,1,1e-10,1,\n", 2, "download_bps is '1e-10'"),
    ],
)
def test_each_bad_trace_row_is_one_config_error_naming_file_and_line(
    tmp_path: Path, body: str, line: int, words: str
) -> None:
    path = write_trace(tmp_path, body)
    with pytest.raises(ConfigError, match=words) as caught:
        PopulationModel.from_trace(path)
    assert f"{path}, line {line}:" in str(caught.value)


@pytest.mark.parametrize(
    ("header", "body", "words"),
    [
        ("node,speed,bandwidth\n", "1,1,1\n", "the first line must be node,speed,"),
        ("", "", "the first line must be"),
        (HEADER, "", "no node rows"),
        (
            HEADER,
            "1,1,1,1,\n3,1,1,1,\n",
            "rows for 2 nodes, up to node 3, but none for node 2; add a row for node 2",
        ),
    ],
)
def test_a_bad_trace_file_is_one_config_error(
    tmp_path: Path, header: str, body: str, words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        PopulationModel.from_trace(write_trace(tmp_path, body, header))


def test_missing_huge_and_binary_traces_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        PopulationModel.from_trace(tmp_path / "absent.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        PopulationModel.from_trace(binary)
    nul = tmp_path / "nul.csv"
    nul.write_bytes(HEADER.encode() + b"1,1,1,1,\x00\n")
    with pytest.raises(ConfigError, match=r"line 2: availability interval '\\x00'"):
        PopulationModel.from_trace(nul)
    long_field = write_trace(tmp_path, "1,1,1,1," + ";".join(["1-2"] * 50_000) + "\n")
    with pytest.raises(ConfigError, match=r"line 2: not valid CSV \(field larger than field limit"):
        PopulationModel.from_trace(long_field)
    monkeypatch.setattr(_population, "MAX_TRACE_BYTES", 10)
    with pytest.raises(ConfigError, match="over the 10 limit"):
        PopulationModel.from_trace(write_trace(tmp_path, "1,1,1,1,\n"))


# ---- config tables -----------------------------------------------------------------------


def test_from_config_builds_the_named_model() -> None:
    model = PopulationModel.from_config(
        {
            "speed": "lognormal",
            "speed-sigma": 0.5,
            "bandwidth": "pareto",
            "download-bps": 2e6,
            "availability": "diurnal",
            "hours-per-day": 8,
            "dropout": 0.1,
            "seconds-per-example": 0.01,
            "seed": 3,
        }
    )
    assert model == PopulationModel(
        speed=LogNormal(1.0, 0.5),
        bandwidth=Bandwidth(Pareto(2e6, 1.5), Pareto(1e6, 1.5)),
        availability=Diurnal(8.0),
        dropout=0.1,
        seconds_per_example=0.01,
        seed=3,
    )
    assert PopulationModel.from_config({}) == PopulationModel()
    assert PopulationModel.from_config({"availability": "bernoulli"}).availability == Bernoulli(
        0.5, 3600.0
    )
    assert PopulationModel.from_config({"availability": "always"}).availability == Always()


def test_from_config_reads_a_trace_relative_to_base_dir(tmp_path: Path) -> None:
    write_trace(tmp_path, "1,0.5,1,1,\n")
    model = PopulationModel.from_config(
        {"trace": "trace.csv", "trace-repeat-s": 86400, "dropout": 0.2}, base_dir=tmp_path
    )
    assert model.dropout == 0.2
    assert model.trace is not None and model.trace.repeat_s == 86400.0
    assert model.build(1).device(1).speed == 0.5
    with pytest.raises(ConfigError, match="drop 'speed'"):
        PopulationModel.from_config({"trace": "trace.csv", "speed": "pareto"}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="drop 'hours-per-day'"):
        PopulationModel.from_config({"trace": "trace.csv", "hours-per-day": 8}, base_dir=tmp_path)


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"sped": "lognormal"}, "unknown population key 'sped'; known keys: speed, speed-median"),
        ({"speed": "fast"}, "speed must be one of constant, lognormal, pareto"),
        ({"speed": "lognormal", "speed-sigma": "1"}, "speed-sigma must be a number"),
        ({"dropout": True}, "dropout must be a number"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"availability": "bernoulli", "availability-p": 2}, "p must be between 0 and 1"),
        ({"trace": 3}, "trace must be a file path"),
        ({"hours-per-day": 8}, "hours-per-day applies only to availability = 'diurnal'"),
        ({"speed": "pareto", "speed-sigma": 1}, "speed-sigma applies only to speed = 'lognormal'"),
        ({"download-bps": 1e6}, "download-bps applies only to bandwidth = 'constant' or"),
    ],
)
def test_from_config_refuses_each_mistake(table: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        PopulationModel.from_config(table)


# ---- the three answers agree -------------------------------------------------------------


def consistency_models(tmp_path: Path) -> list[PopulationModel]:
    rows = "".join(
        f"{n},1,1,1,{';'.join(f'{a}-{a + 5 + n}' for a in range(n * 3, 2000, 50 + n))}\n"
        for n in range(1, 31)
    )
    return [
        PopulationModel(availability=Bernoulli(0.6, period_s=0.1), seed=5),
        PopulationModel(availability=Diurnal(5, start_hour=3.3, spread_hours=7.7), seed=6),
        PopulationModel.from_trace(write_trace(tmp_path, rows)),
        PopulationModel.from_trace(write_trace(tmp_path, rows), repeat_s=2100.0),
    ]


def test_available_nodes_until_and_next_agree_at_random_times(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for model in consistency_models(tmp_path):
        pop = model.build(30)
        scale = 2 * 86_400.0 if isinstance(model.availability, Diurnal) else 7000.0
        for t in rng.uniform(0, scale, 60):
            available = set(pop.available_nodes(float(t)))
            for node in range(1, 31):
                until = pop.available_until(node, float(t))
                assert (until > t) == (node in available)
                if t < until < math.inf:
                    assert node in pop.available_nodes(math.nextafter(until, -math.inf))
                    assert node not in pop.available_nodes(until)
            count = int(rng.integers(1, 25))
            tau = pop.next_available(float(t), count)
            if tau < math.inf:
                assert tau >= t
                assert len(pop.available_nodes(tau)) >= count
                if tau > t:
                    assert len(pop.available_nodes(math.nextafter(tau, -math.inf))) < count


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"speed": "pareto"}, "population speed must be one of Constant, LogNormal, Pareto"),
        ({"availability": "diurnal"}, "the string form is for a config table"),
        ({"bandwidth": 5e6}, "population bandwidth must be one of Bandwidth"),
    ],
)
def test_a_piece_given_as_a_string_or_number_is_one_config_error(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        PopulationModel(**options)
    with pytest.raises(ConfigError, match="population download must be one of"):
        Bandwidth(download=5e6)
