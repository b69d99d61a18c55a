import numpy as np
import pytest

from pollinate import ArrayRecord, FedAvg, MetricRecord, RecordDict, frameworks
from pollinate.errors import ConfigError, RoundError
from pollinate.server import Grid


def test_fedavg_weights_models_by_num_examples(make_grid, global_arrays, good_reply):
    def train(msg, context):
        return good_reply(msg, value=float(context.node_id), num_examples=context.node_id * 10)

    result = FedAvg(fraction_evaluate=0.0).start(make_grid(train), global_arrays, num_rounds=1)
    expected = (1 * 10 + 2 * 20 + 3 * 30) / 60
    np.testing.assert_allclose(result.arrays["w"].numpy(), expected, rtol=1e-6)
    assert result.rounds[0].train.metrics["num-examples"] == 60


def test_train_config_reaches_nodes_with_the_server_round(make_grid, global_arrays, good_reply):
    seen = []

    def train(msg, context):
        seen.append(dict(msg.content["config"]))
        return good_reply(msg)

    FedAvg(fraction_evaluate=0.0).start(
        make_grid(train, num_nodes=2), global_arrays, num_rounds=2, train_config={"lr": 0.1}
    )
    assert seen == [{"lr": 0.1, "server-round": r} for r in (1, 1, 2, 2)]


def test_sampling_is_seeded(make_grid, good_reply):
    grid = make_grid(good_reply, num_nodes=100)
    picks = [FedAvg(fraction_train=0.1, seed=7).sample_nodes(grid, 3, 0) for _ in range(2)]
    assert picks[0] == picks[1] and len(picks[0]) == 10
    other = FedAvg(fraction_train=0.1, seed=8).sample_nodes(grid, 3, 0)
    assert other != picks[0]
    next_round = FedAvg(fraction_train=0.1, seed=7).sample_nodes(grid, 4, 0)
    assert next_round != picks[0]


def test_min_train_nodes_raises_the_sample_size(make_grid, good_reply):
    grid = make_grid(good_reply, num_nodes=100)
    assert len(FedAvg(fraction_train=0.01, min_train_nodes=5).sample_nodes(grid, 1, 0)) == 5


def test_too_few_simulated_nodes_is_a_clear_error_at_once(make_grid, global_arrays, good_reply):
    strategy = FedAvg(min_available_nodes=5)  # would wait 60 s for nodes that cannot come
    message = r"needs min_available_nodes=5 connected nodes, but the simulation has only 3 nodes"
    with pytest.raises(RoundError, match=message):
        strategy.start(make_grid(good_reply), global_arrays, num_rounds=1)


def test_min_train_nodes_above_the_federation_is_a_clear_error(
    make_grid, global_arrays, good_reply
):
    strategy = FedAvg(min_train_nodes=4, min_available_nodes=1)
    message = r"needs min_train_nodes=4 connected nodes, but the simulation has only 3 nodes"
    with pytest.raises(RoundError, match=message):
        strategy.start(make_grid(good_reply), global_arrays, num_rounds=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fraction_train": 1.5}, "fraction_train must be between 0 and 1"),
        ({"fraction_evaluate": -0.1}, "fraction_evaluate must be between 0 and 1"),
        ({"min_train_nodes": -1}, "min_train_nodes must be 0 or more"),
        ({"max_weight": 0}, "max_weight must be positive"),
    ],
)
def test_bad_parameters_fail_at_construction(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        FedAvg(**kwargs)


def test_centralized_evaluation_runs_before_and_after_each_round(
    make_grid, global_arrays, good_reply
):
    calls = []

    def evaluate_fn(server_round, arrays):
        calls.append((server_round, float(arrays["w"].numpy()[0, 0])))
        return {"score": float(server_round)}

    result = FedAvg(fraction_evaluate=0.0).start(
        make_grid(good_reply), global_arrays, num_rounds=2, evaluate_fn=evaluate_fn
    )
    assert calls == [(0, 0.0), (1, 1.0), (2, 1.0)]
    assert result.metrics("server") == {0: {"score": 0.0}, 1: {"score": 1.0}, 2: {"score": 2.0}}


def test_federated_evaluation_is_aggregated(make_grid, global_arrays, good_reply):
    def evaluate(msg, context):
        metrics = {"num-examples": context.node_id, "accuracy": float(context.node_id) / 10}
        return msg.reply(msg.content.__class__({"metrics": MetricRecord(metrics)}))

    result = FedAvg().start(make_grid(good_reply, evaluate=evaluate), global_arrays, num_rounds=1)
    evaluate_phase = result.rounds[0].evaluate
    assert evaluate_phase.num_ok == 3
    assert np.isclose(evaluate_phase.metrics["accuracy"], (0.1 * 1 + 0.2 * 2 + 0.3 * 3) / 6)


def test_custom_metric_aggregation(make_grid, global_arrays, good_reply):
    def last_only(records, weight_key):
        return MetricRecord({"count": len(records)})

    strategy = FedAvg(fraction_evaluate=0.0, train_metrics_aggr_fn=last_only)
    result = strategy.start(make_grid(good_reply), global_arrays, num_rounds=1)
    assert result.rounds[0].train.metrics == {"count": 3}


def test_evaluation_minimum_of_zero_lets_the_run_go_on_when_every_evaluation_fails(
    make_grid, global_arrays, good_reply
):
    def evaluate(msg, context):
        raise RuntimeError("no test data here")

    strategy = FedAvg(min_evaluate_nodes=0)
    result = strategy.start(make_grid(good_reply, evaluate=evaluate), global_arrays, num_rounds=2)
    assert [r.evaluate.num_failed for r in result.rounds] == [3, 3]


def test_initial_arrays_are_copied_so_the_caller_cannot_change_them(make_grid, good_reply):
    import torch

    weights = torch.zeros(3)
    initial = frameworks.torch.to_arrays({"w": weights})
    seen = []

    def train(msg, context):
        seen.append(float(msg.content["arrays"]["w"].numpy()[0]))
        weights.add_(1.0)  # a client that trains the caller's module in place
        return msg.reply(
            RecordDict(
                {
                    "arrays": ArrayRecord({"w": np.ones(3, np.float32)}),
                    "metrics": MetricRecord({"num-examples": 1}),
                }
            )
        )

    FedAvg(fraction_evaluate=0.0).start(make_grid(train), initial, num_rounds=1)
    assert seen == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("initial", "message"), [([np.zeros(2)], "initial_arrays must be an ArrayRecord")]
)
def test_initial_arrays_must_be_a_record(make_grid, good_reply, initial, message):
    with pytest.raises(ConfigError, match=message):
        FedAvg().start(make_grid(good_reply), initial, num_rounds=1)


def test_evaluate_fn_returning_a_tuple_is_a_clear_error(make_grid, global_arrays, good_reply):
    with pytest.raises(ConfigError, match="evaluate_fn must return a dict of metrics"):
        FedAvg().start(
            make_grid(good_reply),
            global_arrays,
            num_rounds=1,
            evaluate_fn=lambda server_round, arrays: (0.5, {"accuracy": 0.9}),
        )


def test_num_rounds_must_be_positive(make_grid, global_arrays, good_reply):
    with pytest.raises(RoundError, match="num_rounds must be at least 1"):
        FedAvg().start(make_grid(good_reply), global_arrays, num_rounds=0)


class _ConnectingGrid(Grid):
    """Nodes 1..10 connect over time: a wait for ``count`` nodes sees exactly ``count``."""

    def __init__(self):
        self.waited_for = []

    run_id = 1

    def node_ids(self):
        return list(range(1, 11))

    def wait_for_nodes(self, count, timeout):
        self.waited_for.append(count)
        return list(range(1, count + 1))

    def send(self, messages):
        raise NotImplementedError

    def receive(self, message_ids, timeout_s=None):
        raise NotImplementedError


@pytest.mark.parametrize(
    ("options", "phase", "waits_for"),
    [
        ({"min_train_nodes": 5, "min_available_nodes": 2}, 0, 5),
        ({"min_evaluate_nodes": 4, "min_available_nodes": 2}, 1, 4),
        ({"min_train_nodes": 2, "min_available_nodes": 6}, 0, 6),
    ],
)
def test_a_phase_waits_for_as_many_nodes_as_it_needs(options, phase, waits_for):
    grid = _ConnectingGrid()
    picked = FedAvg(**options).sample_nodes(grid, 1, phase)
    assert grid.waited_for == [waits_for] and len(picked) >= min(waits_for, 5)


def test_a_subclass_may_read_its_replies_again_after_super(make_grid, global_arrays, good_reply):
    """The Flower way: aggregate with super(), then look at the replies again."""
    seen = []

    class Counting(FedAvg):
        def aggregate_train(self, server_round, arrays, replies, state):
            new, metrics, state = super().aggregate_train(server_round, arrays, replies, state)
            seen.append(sum(1 for _ in replies))  # a second pass sees every reply
            return new, metrics, state

        def aggregate_evaluate(self, server_round, replies):
            metrics = super().aggregate_evaluate(server_round, replies)
            seen.append(len(replies))
            return metrics

    def evaluate(msg, context):
        return msg.reply(RecordDict({"metrics": MetricRecord({"num-examples": 1, "loss": 0.5})}))

    Counting().start(make_grid(good_reply, evaluate=evaluate), global_arrays, num_rounds=1)
    assert seen == [3, 3]


def test_default_strategies_and_marked_methods_stream_their_replies(
    make_grid, global_arrays, good_reply
):
    from pollinate.strategy import streams_replies

    kinds = []

    class Streaming(FedAvg):
        @streams_replies
        def aggregate_train(self, server_round, arrays, replies, state):
            kinds.append(type(replies).__name__)
            return super().aggregate_train(server_round, arrays, replies, state)

    Streaming(fraction_evaluate=0.0).start(make_grid(good_reply), global_arrays, num_rounds=1)
    assert kinds == ["generator"]  # replies as they arrive: about one held at a time
    assert getattr(FedAvg.aggregate_train, "__streams_replies__", False)
    assert getattr(FedAvg.aggregate_evaluate, "__streams_replies__", False)


def test_a_metrics_aggregation_function_may_return_a_plain_dict(
    make_grid, global_arrays, good_reply
):
    def summed(records, weight_key):
        return {"num-examples": sum(r["num-examples"] for r in records)}

    strategy = FedAvg(fraction_evaluate=0.0, train_metrics_aggr_fn=summed)
    result = strategy.start(make_grid(good_reply), global_arrays, num_rounds=1)
    assert result.rounds[-1].train.metrics == {"num-examples": 30}
    wrong = FedAvg(fraction_evaluate=0.0, train_metrics_aggr_fn=lambda records, key: 0.5)
    with pytest.raises(ConfigError, match="train_metrics_aggr_fn must return a dict"):
        wrong.start(make_grid(good_reply), global_arrays, num_rounds=1)


def test_a_round_config_may_be_a_function_of_the_round(make_grid, global_arrays, good_reply):
    seen = []

    def train(msg, context):
        seen.append(msg.content["config"]["lr"])
        return good_reply(msg)

    FedAvg(fraction_evaluate=0.0, min_available_nodes=1, min_train_nodes=1).start(
        make_grid(train, num_nodes=1),
        global_arrays,
        num_rounds=3,
        train_config=lambda server_round: {"lr": 0.1 / server_round},
    )
    assert seen == pytest.approx([0.1, 0.05, 0.1 / 3])
    with pytest.raises(ConfigError, match="config function must return a dict"):
        FedAvg(fraction_evaluate=0.0, min_available_nodes=1, min_train_nodes=1).start(
            make_grid(train, num_nodes=1), global_arrays, num_rounds=1, train_config=lambda r: 3
        )


def test_the_strategy_carries_start_settings_that_start_arguments_override(
    make_grid, global_arrays, good_reply
):
    seen = []

    def train(msg, context):
        seen.append(
            (msg.content["config"]["lr"], float(msg.content["arrays"]["w"].numpy().flat[0]))
        )
        return good_reply(msg)

    evaluations = []
    strategy = FedAvg(
        fraction_evaluate=0.0,
        min_available_nodes=1,
        min_train_nodes=1,
        initial_arrays=global_arrays,
        train_config=lambda server_round: {"lr": 0.5 / server_round},
        evaluate_fn=lambda server_round, arrays: evaluations.append(server_round) or {"x": 1.0},
    )
    result = strategy.start(make_grid(train, num_nodes=1), num_rounds=2)
    first_weight = float(global_arrays["w"].numpy().flat[0])
    assert seen[0] == (0.5, first_weight) and seen[1][0] == 0.25
    assert evaluations == [0, 1, 2] and result.metrics("server")[2] == {"x": 1.0}

    seen.clear()
    other = ArrayRecord({"w": np.full((2, 3), 7.0, np.float32), "b": np.zeros(3, np.float32)})
    strategy.start(make_grid(train, num_nodes=1), other, num_rounds=1, train_config={"lr": 1.0})
    assert seen == [(1.0, 7.0)]


def test_strategy_settings_are_checked_when_it_is_made():
    with pytest.raises(ConfigError, match="initial_arrays must be an ArrayRecord"):
        FedAvg(initial_arrays=[np.zeros(3)])
    with pytest.raises(ConfigError, match="train_config must be a dict or a function"):
        FedAvg(train_config=0.1)
    with pytest.raises(ConfigError, match="evaluate_fn must be a function"):
        FedAvg(evaluate_fn={"loss": 1.0})


def test_a_round_logs_its_first_set_aside_replies_and_counts_the_rest(
    make_grid, global_arrays, good_reply, caplog
):
    def train(msg, context):  # most nodes of a cross-device round hold no data
        return good_reply(msg, num_examples=0 if context.node_id > 2 else 10)

    with caplog.at_level("WARNING", logger="pollinate.strategy"):
        result = FedAvg(fraction_evaluate=0.0).start(
            make_grid(train, num_nodes=14), global_arrays, num_rounds=1
        )
    lines = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert len(lines) == 6 and lines[-1].startswith("round 1 train: set aside 7 more")
    assert result.rounds[0].train.num_failed == 12 and result.rounds[0].train.num_ok == 2


def test_a_subclass_sample_nodes_of_three_arguments_still_picks_the_nodes(
    make_grid, global_arrays, good_reply
):
    class FirstTwo(FedAvg):
        def sample_nodes(self, grid: Grid, server_round: int, phase: int) -> list[int]:
            return sorted(grid.node_ids())[:2]

    trained: list[int] = []

    def train(msg, context):
        trained.append(context.node_id)
        return good_reply(msg)

    FirstTwo(fraction_evaluate=0.0).start(
        make_grid(train, num_nodes=5), global_arrays, num_rounds=1
    )
    assert sorted(trained) == sorted(make_grid(train, num_nodes=5).node_ids())[:2]
