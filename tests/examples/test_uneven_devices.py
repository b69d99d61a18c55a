"""uneven-devices: each strategy runs on the simulated population, and FedBuff gets there first."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pollinate import Result, ServerApp, run_simulation
from pollinate.cli._main import cli
from pollinate.errors import ConfigError
from pollinate.loader import load_object
from pollinate.simulation import PopulationModel

from .conftest import Example

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FEW = {"num-server-rounds": 20, "num-versions": 30}
"""Enough rounds and versions for 70% on the default population, in about a second each."""
FEW_FEDASYNC = {"num-versions": 300}
"""FedAsync makes a version per update: 300 fold as many as 30 of FedBuff's (K = 10)."""
TARGET = 0.7


def federation(example: Example, name: str) -> dict[str, Any]:
    """One ``[tool.pollinate.federations.NAME]`` table of the example's pyproject."""
    with (example.app_dir / "pyproject.toml").open("rb") as f:
        return dict(tomllib.load(f)["tool"]["pollinate"]["federations"][name])


def run(example: Example, strategy: str, fed: str = "local-simulation", **keys: Any) -> Result:
    """The example on a federation, as ``pollinate run`` joins its population, in this process."""
    table = federation(example, fed)
    server_app = load_object("uneven_devices.server_app:app", ServerApp, example.app_dir)
    return run_simulation(
        server_app,
        "uneven_devices.client_app:app",
        num_nodes=table["num-nodes"],
        backend=table["backend"],
        app_dir=example.app_dir,
        run_config={**example.config, **FEW, "strategy": strategy, **keys},
        population=PopulationModel.from_config(table["population"], base_dir=example.app_dir),
        verbose=False,
    )


def time_to(result: Result, target: float) -> float:
    """The simulated time of the first model at ``target`` server accuracy or better."""
    for record in result.rounds:
        if record.server_metrics.get("accuracy", 0.0) >= target:
            assert record.simulated_time_s is not None
            return record.simulated_time_s
    raise AssertionError(f"never reached {target}")


@pytest.fixture(scope="module")
def runs(uneven_devices: Example) -> dict[str, Result]:
    """Every strategy once on the default population, with few rounds or versions."""
    runs = {s: run(uneven_devices, s) for s in ("fedavg", "fedavg-deadline", "fedbuff")}
    return {**runs, "fedasync": run(uneven_devices, "fedasync", **FEW_FEDASYNC)}


@pytest.mark.parametrize("strategy", ["fedavg", "fedavg-deadline", "fedbuff", "fedasync"])
def test_each_strategy_learns_on_a_simulated_clock(runs: dict[str, Result], strategy: str) -> None:
    result = runs[strategy]
    times = [r.simulated_time_s for r in result.rounds if r.server_round > 0]
    assert len(times) == len(result.rounds) - 1 and all(t is not None for t in times)
    assert times == sorted(times) and times[-1] > times[0]  # type: ignore[type-var]
    assert result.final_metrics()["server.accuracy"] > 0.3  # chance is 0.1


def test_fedbuff_reaches_the_target_sooner_than_fedavg(runs: dict[str, Result]) -> None:
    """Synchronous rounds wait for the Pareto stragglers; FedBuff never does."""
    fedbuff, fedavg = time_to(runs["fedbuff"], TARGET), time_to(runs["fedavg"], TARGET)
    assert fedbuff < fedavg
    assert time_to(runs["fedavg-deadline"], TARGET) < fedavg


def test_a_seeded_run_repeats_bit_for_bit(uneven_devices: Example, runs: dict[str, Result]) -> None:
    """With seconds-per-example, simulated times and so the asynchronous model are exact."""
    again = run(uneven_devices, "fedbuff")
    first = runs["fedbuff"]
    assert again.arrays == first.arrays
    assert [r.simulated_time_s for r in again.rounds] == [r.simulated_time_s for r in first.rounds]
    assert again.metrics("server") == first.metrics("server")


def test_the_trace_federation_reads_devices_csv(uneven_devices: Example) -> None:
    table = federation(uneven_devices, "trace")
    model = PopulationModel.from_config(table["population"], base_dir=uneven_devices.app_dir)
    population = model.build(table["num-nodes"])
    assert population.device(2).speed == 0.096  # row 2 of devices.csv
    assert 3 not in population.available_nodes(4 * 3600.0)  # node 3 is there 19:00-03:00
    assert 3 in population.available_nodes(4 * 3600.0 + 86400.0 - 2 * 3600.0)  # 02:00 next day
    assert run(uneven_devices, "fedavg", "trace", **{"num-server-rounds": 2}).simulated_time_s


def test_an_unknown_strategy_is_one_clear_error(uneven_devices: Example) -> None:
    with pytest.raises(ConfigError, match="fedavg, fedavg-deadline, fedbuff, fedasync"):
        run(uneven_devices, "fedprox")


def test_pollinate_run_prints_simulated_time_and_keeps_it(
    uneven_devices: Example, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ["run", str(uneven_devices.app_dir), "--json", "--out", str(out)]
    config = "strategy=fedbuff num-versions=5"
    done = CliRunner().invoke(cli, [*args, "--run-config", config], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["round"] for line in lines] == [0, 1, 2, 3, 4, 5]
    assert all(line["simulated_time_s"] > 0 for line in lines[1:])
