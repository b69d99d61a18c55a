"""The privacy a run spent, in ``pollinate run``'s summary, its --json line and the report."""

import json

import pytest

from pollinate.server._privacy import privacy_spent

from .conftest import TINY_CLIENT

# A node that reports what a DP round's train metrics carry: the run's cumulative epsilon
# (1.5 a round) at delta 1e-5, and its own (DP-SGD) epsilon, 0.25 a round plus its node id.
DP_CLIENT = TINY_CLIENT.replace(
    'metrics = MetricRecord({"num-examples": 10, "train-loss": 1.0})',
    """server_round = msg.content["config"]["server-round"]
    metrics = MetricRecord(
        {
            "num-examples": 10,
            "train-loss": 1.0,
            "privacy.epsilon": 1.5 * server_round,
            "privacy.delta": 1e-5,
            "privacy.node-epsilon": 0.25 * server_round + context.node_id,
            "privacy.node-delta": 1e-6,
        }
    )""",
)


def _run(invoke, app_dir, *options):
    result = invoke("run", app_dir, *options)
    assert result.exit_code == 0, result.output
    return result


def test_a_dp_run_shows_its_epsilon_in_the_summary_the_json_line_and_the_report(make_app, invoke):
    app_dir = make_app(client=DP_CLIENT)
    summary = _run(invoke, app_dir).stdout
    assert "privacy                          epsilon 3 at delta 1e-05 after 2 rounds" in summary
    node_line = next(line for line in summary.splitlines() if "privacy (nodes' own)" in line)
    assert node_line.endswith("at delta 1e-06, the most any node reported (round 2)")

    line = json.loads(_run(invoke, app_dir, "--json").stdout.strip().splitlines()[-1])
    privacy = line["privacy"]
    assert privacy["epsilon"] == 3.0 and privacy["delta"] == 1e-5 and privacy["rounds"] == 2
    assert privacy["node_delta"] == 1e-6 and privacy["node_round"] == 2
    assert privacy["node_epsilon"] == pytest.approx(line["final"]["train.privacy.node-epsilon"])

    report = invoke("report", app_dir / "runs" / line["out_dir"].rsplit("/", 1)[-1])
    assert report.exit_code == 0, report.output
    assert "privacy: epsilon 3 at delta 1e-05 after 2 rounds" in report.stdout.splitlines()
    page = (app_dir / "runs" / line["out_dir"].rsplit("/", 1)[-1] / "report.html").read_text()
    assert "<td>privacy</td><td>epsilon 3 at delta 1e-05 after 2 rounds</td>" in page


def test_a_run_without_dp_shows_no_privacy(make_app, invoke):
    app_dir = make_app()
    assert "privacy" not in _run(invoke, app_dir).stdout
    line = json.loads(_run(invoke, app_dir, "--json").stdout.strip().splitlines()[-1])
    assert set(line) == {"run_id", "out_dir", "wall_time_s", "rounds_time_s", "rounds", "final"}
    report = invoke("report", app_dir / "runs" / line["out_dir"].rsplit("/", 1)[-1])
    assert report.stdout.splitlines()[0].startswith("curves: ")
    assert len(report.stdout.splitlines()) == 2


def test_the_last_round_that_reported_privacy_is_the_one_shown():
    train = {
        1: {"privacy.epsilon": 0.5, "privacy.delta": 1e-5},
        2: {"privacy.epsilon": 0.9, "privacy.delta": 1e-5},
        3: {"train-loss": 0.1},  # a round whose replies carried no privacy figures
    }
    spent = privacy_spent(train)
    assert spent is not None and spent.nodes is None
    assert spent.lines() == [("privacy", "epsilon 0.9 at delta 1e-05 after 2 rounds")]
    assert spent.to_json() == {"epsilon": 0.9, "delta": 1e-5, "rounds": 2}


def test_node_figures_alone_and_an_epsilon_without_delta():
    spent = privacy_spent({1: {"privacy.node-epsilon": 12.345}, 2: {}})
    assert spent is not None and spent.run is None
    assert spent.lines() == [
        ("privacy (nodes' own)", "epsilon 12.3, the most any node reported (round 1)")
    ]
    assert spent.to_json() == {"node_epsilon": 12.345, "node_delta": None, "node_round": 1}
    assert privacy_spent({1: {"privacy.epsilon": 2.0}}).lines() == [
        ("privacy", "epsilon 2 after 1 round")
    ]


def test_the_nodes_own_epsilon_shown_is_the_largest_any_round_reported():
    # A node's own epsilon only grows, but the node may sit out the last rounds.
    train = {
        1: {"privacy.node-epsilon": 3.0, "privacy.node-delta": 1e-5},
        2: {"privacy.node-epsilon": 9.0, "privacy.node-delta": 1e-5},
        3: {"privacy.node-epsilon": 4.0, "privacy.node-delta": 1e-5},
    }
    spent = privacy_spent(train)
    assert spent is not None and spent.nodes is not None
    assert (spent.nodes.epsilon, spent.nodes.server_round) == (9.0, 2)


def test_the_default_metrics_aggregation_keeps_the_worst_nodes_privacy():
    from pollinate import MetricRecord
    from pollinate.strategy._aggregate import weighted_mean

    records = [
        MetricRecord({"num-examples": 90, "privacy.node-epsilon": 1.0, "privacy.node-delta": 1e-6}),
        MetricRecord({"num-examples": 10, "privacy.node-epsilon": 8.0, "privacy.node-delta": 1e-5}),
    ]
    merged = weighted_mean(records, "num-examples")
    assert merged["privacy.node-epsilon"] == 8.0 and merged["privacy.node-delta"] == 1e-5
    assert merged["num-examples"] == 100
    # A weighted mean of equal deltas came out as 1.0000000000000003e-05; the max is exact.
    same = [MetricRecord({"num-examples": n, "privacy.node-delta": 1e-5}) for n in (1, 23, 5)]
    assert repr(weighted_mean(same, "num-examples")["privacy.node-delta"]) == "1e-05"


@pytest.mark.parametrize("value", [True, "2.9", None])
def test_values_that_are_not_numbers_are_not_privacy(value):
    assert privacy_spent({1: {"privacy.epsilon": value}}) is None


def test_a_securely_aggregated_run_says_so_with_the_nodes_summed():
    train = {
        1: {"secagg.count": 7, "num-examples": 7, "privacy.epsilon": 0.5, "privacy.delta": 1e-5},
        2: {"secagg.count": 6, "num-examples": 6, "privacy.epsilon": 0.9, "privacy.delta": 1e-5},
    }
    spent = privacy_spent(train)
    assert spent is not None
    assert spent.lines() == [
        ("privacy", "epsilon 0.9 at delta 1e-05 after 2 rounds"),
        ("secure aggregation", "SecAgg+, 6 nodes summed (round 2)"),
    ]
    assert spent.to_json() == {
        "epsilon": 0.9,
        "delta": 1e-5,
        "rounds": 2,
        "secure_aggregation": "SecAgg+",
        "secagg_nodes": 6,
        "secagg_round": 2,
    }
    alone = privacy_spent({1: {"secagg.count": 3}})
    assert alone is not None and alone.lines() == [
        ("secure aggregation", "SecAgg+, 3 nodes summed (round 1)")
    ]
