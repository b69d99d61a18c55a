"""A federation's population table: pollinate run simulates on its clock."""

import json

from .conftest import TINY_FEDERATIONS


def test_pollinate_run_reads_a_federation_s_population_table(make_app, invoke):
    federations = TINY_FEDERATIONS + (
        "\n[tool.pollinate.federations.local-simulation.population]\n"
        'speed = "lognormal"\nspeed-sigma = 1.0\nseconds-per-example = 0.5\n'
    )
    result = invoke("run", make_app(federations=federations), "--json")
    assert result.exit_code == 0, result.output
    rounds = json.loads(result.stdout.strip().splitlines()[-1])["rounds"]
    times = [r["simulated_time_s"] for r in rounds[1:]]
    assert len(times) == 2 and 0 < times[0] < times[1]


def test_a_mistake_in_the_population_table_is_one_clear_error(make_app, invoke):
    federations = TINY_FEDERATIONS + (
        "\n[tool.pollinate.federations.local-simulation.population]\nspeeed = 'pareto'\n"
    )
    result = invoke("run", make_app(federations=federations))
    assert result.exit_code == 1
    assert "speeed" in result.stderr and "Traceback" not in result.output


def test_a_misspelled_population_table_is_named_among_the_known_keys(make_app, invoke):
    federations = TINY_FEDERATIONS + (
        "\n[tool.pollinate.federations.local-simulation.populaton]\ndropout = 0.1\n"
    )
    result = invoke("run", make_app(federations=federations))
    assert result.exit_code == 1
    assert "unknown key 'populaton.dropout'" in result.stderr
    assert "population" in result.stderr.split("known keys:")[1]


def test_the_population_cannot_be_set_on_the_command_line(make_app, invoke):
    result = invoke("run", make_app(), "--federation-config", "population.dropout=0.2")
    assert result.exit_code == 1
    assert "--federation-config cannot set the population model" in result.stderr
