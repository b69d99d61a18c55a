"""FedBuff and FedAsync against hand computations, on a grid that answers in a scripted order."""

import numpy as np
import pytest

from pollinate import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from pollinate.errors import ConfigError, PollinateError, RoundError
from pollinate.message import ErrorCode, Message
from pollinate.privacy import SecAggPlus, dp_fixed_clip
from pollinate.server import Grid, ResumePoint, RoundRecord
from pollinate.strategy import (
    FedAsync,
    FedBuff,
    chain,
    constant,
    hinge,
    krum,
    median,
    norm_bound,
    polynomial,
    server_momentum,
)

MODEL = ArrayRecord({"w": np.zeros(2)})


class ScriptedGrid(Grid):
    """Nodes 1..n; ``receive_first`` answers the in-flight task of the next scripted node.

    Node n trains by adding ``adds[n]`` to the model it was sent. A script entry
    ``("error", n)`` answers n's task with a TIMEOUT error; a callable picks the node from
    the nodes in flight; ``"train"`` or ``"evaluate"`` the lowest node with a task of that
    kind (an evaluation answers ``accuracy`` = the first value of the model it got). It
    checks that no node ever gets two tasks at once.
    """

    def __init__(self, num_nodes, script, adds=None, resume=None):
        self.nodes = list(range(1, num_nodes + 1))
        self.script = list(script)
        self.adds = adds or {n: float(n) for n in self.nodes}
        self.flight = {}  # message id -> message
        self.sent = []  # (node, first value of the model sent, server-round)
        self.abandoned = []
        self.evaluations = []  # the nodes sent an evaluate task, in order
        self.most_in_flight = 0
        self._resume = resume

    @property
    def run_id(self):
        return 1

    @property
    def resume_point(self):
        point, self._resume = self._resume, None
        return point

    def node_ids(self):
        return self.nodes

    def send(self, messages):
        ids = []
        for message in messages:
            node = message.metadata.dst_node_id
            busy = {m.metadata.dst_node_id for m in self.flight.values()}
            assert node not in busy, f"node {node} got a second task"
            self.flight[message.metadata.message_id] = message
            if message.metadata.message_type == "evaluate":
                self.evaluations.append(node)
                ids.append(message.metadata.message_id)
                continue
            config = message.content.config_records["config"]
            self.sent.append(
                (
                    node,
                    float(message.content.arrays("arrays")["w"].numpy()[0]),
                    config["server-round"],
                )
            )
            ids.append(message.metadata.message_id)
        self.most_in_flight = max(self.most_in_flight, len(self.flight))
        return ids

    def receive(self, message_ids, timeout_s=None):
        raise AssertionError("an asynchronous strategy receives with receive_first")

    def receive_first(self, message_ids, timeout_s=None):
        entry = self.script.pop(0)
        if entry in ("train", "evaluate"):
            entry = min(
                m.metadata.dst_node_id
                for m in self.flight.values()
                if m.metadata.message_type == entry
            )
        if callable(entry):
            entry = entry(sorted(m.metadata.dst_node_id for m in self.flight.values()))
        error = isinstance(entry, tuple)
        node = entry[1] if error else entry
        (message_id,) = [i for i in message_ids if self.flight[i].metadata.dst_node_id == node]
        message = self.flight.pop(message_id)
        if error:
            return message.reply_error(ErrorCode.TIMEOUT, "scripted")
        sent = message.content.arrays("arrays")
        if message.metadata.message_type == "evaluate":
            accuracy = float(sent["w"].numpy()[0])
            metrics = MetricRecord({"num-examples": 1, "accuracy": accuracy})
            return message.reply(RecordDict({"metrics": metrics}))
        trained = ArrayRecord({k: a.numpy() + self.adds[node] for k, a in sent.items()})
        metrics = MetricRecord({"num-examples": 10 * node, "loss": float(node)})
        return message.reply(RecordDict({"arrays": trained, "metrics": metrics}))

    def abandon(self, message_ids):
        for message_id in message_ids:
            self.abandoned.append(self.flight.pop(message_id).metadata.dst_node_id)


def _w(result):
    return result.arrays["w"].numpy()


def test_fedbuff_weights_stale_updates_as_computed_by_hand():
    # K=2, s(tau) = 1/(1+tau). Node n adds n. All three start on version 0 (x0 = 0).
    # v1: node 1 (tau 0): 0+1-0 = 1; node 2 (tau 0): 2          -> x1 = (1+2)/2 = 1.5
    #     (node 1 was sent version 0 again: the version had not moved yet)
    # v2: node 3 (from v0, tau 1): 1.5 + 0.5*(3-0) = 3.0;
    #     node 2 (from v1, tau 0): 1.5 + (3.5-1.5) = 3.5         -> x2 = (3+3.5)/2 = 3.25
    grid = ScriptedGrid(3, [1, 2, 3, 2])
    strategy = FedBuff(buffer_size=2, concurrency=3, staleness=polynomial(1.0))
    result = strategy.start(grid, MODEL, num_rounds=2)
    np.testing.assert_array_equal(_w(result), [3.25, 3.25])
    v1, v2 = result.rounds
    assert (v1.server_round, v2.server_round) == (1, 2)
    assert v1.train.metrics["fedbuff.staleness-mean"] == 0.0
    assert v2.train.metrics["fedbuff.staleness-mean"] == 0.5
    assert v2.train.metrics["fedbuff.staleness-max"] == 1
    # the train metrics are the weighted mean (num-examples 10n): (3*30 + 2*20) / 50
    assert v2.train.metrics["loss"] == pytest.approx(2.6)
    assert v1.train.num_ok == v2.train.num_ok == 2
    assert sorted(grid.abandoned) == [1, 3]  # what is in flight at the end
    # each task carries the model in force and the version it helps make
    assert sorted(grid.sent[:3]) == [(1, 0.0, 1), (2, 0.0, 1), (3, 0.0, 1)]
    assert grid.sent[3:] == [(1, 0.0, 1), (2, 1.5, 2), (3, 1.5, 2)]


def test_the_server_learning_rate_scales_the_buffered_step():
    grid = ScriptedGrid(3, [1, 2])
    strategy = FedBuff(buffer_size=2, concurrency=3, server_learning_rate=0.5)
    np.testing.assert_array_equal(_w(strategy.start(grid, MODEL, num_rounds=1)), [0.75, 0.75])


def test_fedasync_mixes_each_update_in_by_hand():
    # alpha 0.5, s(tau) = 1/(1+tau); node 1 adds 6, node 2 adds 4; x0 = 0.
    # v1: node 2 (tau 0, alpha_t 0.5): x_new 4           -> x1 = 0.5*0 + 0.5*4 = 2
    # v2: node 1 (from v0, tau 1, alpha_t .25): x_new 6  -> x2 = 0.75*2 + 0.25*6 = 3
    # v3: node 2 (from v1, tau 1, alpha_t .25): 2+4 = 6  -> x3 = 0.75*3 + 0.25*6 = 3.75
    grid = ScriptedGrid(2, [2, 1, 2], adds={1: 6.0, 2: 4.0})
    strategy = FedAsync(alpha=0.5, concurrency=2, staleness=polynomial(1.0))
    result = strategy.start(grid, MODEL, num_rounds=3)
    np.testing.assert_array_equal(_w(result), [3.75, 3.75])
    assert [r.train.metrics["fedbuff.staleness-max"] for r in result.rounds] == [0, 1, 1]


def test_updates_staler_than_max_staleness_are_failures_with_the_reason():
    # v1 as by hand above (1.5); then node 3 (tau 1) is set aside, node 2 (tau 0) gives
    # 3.5, node 1 (from v0, tau 1) is set aside, node 3 (re-sent v1, tau 0) gives 4.5.
    grid = ScriptedGrid(3, [1, 2, 3, 2, 1, 3])
    strategy = FedBuff(buffer_size=2, concurrency=3, staleness=constant(), max_staleness=0)
    result = strategy.start(grid, MODEL, num_rounds=2)
    np.testing.assert_array_equal(_w(result), [4.0, 4.0])
    failures = result.rounds[1].train.failures
    assert [f.node_id for f in failures] == [3, 1]
    assert "1 versions stale, over max_staleness=0" in failures[0].reason


def test_an_error_reply_is_a_failure_and_its_node_is_free_again():
    grid = ScriptedGrid(2, [("error", 1), 2, 1])
    strategy = FedBuff(buffer_size=2, concurrency=2, staleness=constant())
    result = strategy.start(grid, MODEL, num_rounds=1)
    np.testing.assert_array_equal(_w(result), [1.5, 1.5])  # (0+2 + 0+1) / 2
    (failure,) = result.rounds[0].train.failures
    assert failure.node_id == 1 and "TIMEOUT" in failure.reason
    assert [node for node, _, _ in grid.sent].count(1) == 2  # sent a new task at once


def test_nodes_that_keep_failing_end_the_run_with_the_reasons():
    grid = ScriptedGrid(1, [("error", 1)] * 10)
    with pytest.raises(RoundError, match="the nodes keep failing: node 1: error reply"):
        FedBuff(buffer_size=1, concurrency=1).start(grid, MODEL, num_rounds=1)


def test_concurrency_caps_the_tasks_in_flight_and_each_version_folds_k():
    grid = ScriptedGrid(8, [min] * 40)  # the lowest node in flight always answers first
    strategy = FedBuff(buffer_size=3, concurrency=4, seed=1)
    result = strategy.start(grid, MODEL, num_rounds=10)
    assert grid.most_in_flight == 4
    assert all(r.train.num_ok == 3 for r in result.rounds)
    assert len(grid.abandoned) == 3  # the last reply's node got no new task


def test_a_chain_works_on_the_buffer_and_keeps_its_state():
    grid = ScriptedGrid(3, [1, 2, 3, 1])
    strategy = FedBuff(
        buffer_size=2,
        concurrency=3,
        staleness=constant(),
        aggregation=chain(
            norm_bound(1.0), server_momentum(server_learning_rate=1.0, server_momentum=0.5)
        ),
    )
    result = strategy.start(grid, MODEL, num_rounds=2)
    assert result.strategy_state  # the momentum
    assert np.all(np.isfinite(_w(result)))


def test_a_robust_aggregator_works_on_the_buffer():
    # K=3, all fresh: the contributions are the nodes' models 1, 2 and 10; their median is 2.
    grid = ScriptedGrid(3, [1, 2, 3], adds={1: 1.0, 2: 2.0, 3: 10.0})
    strategy = FedBuff(buffer_size=3, concurrency=3, aggregation=chain(median()))
    np.testing.assert_array_equal(_w(strategy.start(grid, MODEL, num_rounds=1)), [2.0, 2.0])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"buffer_size": 0}, "buffer_size must be at least 1"),
        ({"buffer_size": 4, "concurrency": 3}, r"concurrency \(3\) is below buffer_size \(4\)"),
        ({"staleness": "sqrt"}, "staleness must be a function of the staleness"),
        ({"staleness": lambda tau: -1.0}, "must give a finite number >= 0"),
        ({"max_staleness": -1}, "max_staleness must be 0 or more"),
        ({"fraction_evaluate": 1.5}, "fraction_evaluate must be between 0 and 1"),
        ({"server_learning_rate": 0.0}, "server_learning_rate must be"),
        ({"aggregation": chain(dp_fixed_clip(1.0, 1.0))}, "synchronous rounds of Poisson"),
        (
            {"aggregation": chain(krum(num_malicious_nodes=1)), "buffer_size": 2, "concurrency": 2},
            "2 updates per version",
        ),
        ({"secure_aggregation": SecAggPlus(3, 2)}, "needs a round's cohort"),
    ],
)
def test_combinations_that_cannot_work_asynchronously_are_refused(options, match):
    with pytest.raises(ConfigError, match=match):
        FedBuff(**options)


def test_staleness_functions_follow_their_formulas():
    assert polynomial(0.5)(3) == 0.5
    assert constant()(100) == 1.0
    assert hinge(a=1.0, b=2)(2) == 1.0 and hinge(a=1.0, b=2)(4) == 1 / 3
    for bad in (lambda: polynomial(-1), lambda: hinge(0, 1), lambda: hinge(1, -1)):
        with pytest.raises(ConfigError):
            bad()
    with pytest.raises(ConfigError, match="alpha must be in"):
        FedAsync(alpha=1.5)


def test_a_resumed_run_carries_on_from_the_last_version():
    # The run above made x2 = 3.25; its tasks in flight are gone. Resumed: everyone is
    # sent version 2; nodes 1 and 2 answer fresh: x3 = 3.25 + (1 + 2) / 2 = 4.75.
    rounds = (RoundRecord(1), RoundRecord(2))
    point = ResumePoint(ArrayRecord({"w": np.full(2, 3.25)}), rounds, 2)
    grid = ScriptedGrid(3, [1, 2], resume=point)
    strategy = FedBuff(buffer_size=2, concurrency=3, staleness=polynomial(1.0))
    result = strategy.start(grid, MODEL, num_rounds=3)
    np.testing.assert_array_equal(_w(result), [4.75, 4.75])
    assert [r.server_round for r in result.rounds] == [1, 2, 3]
    assert {config_round for _, _, config_round in grid.sent} == {3}


def test_the_same_seed_makes_the_same_run():
    def run(seed):
        grid = ScriptedGrid(6, [min, max] * 20)
        strategy = FedBuff(buffer_size=2, concurrency=3, seed=seed)
        result = strategy.start(grid, MODEL, num_rounds=6)
        return _w(result).tolist(), [r.train.metrics for r in result.rounds], grid.sent

    assert run(3) == run(3)
    assert run(3) != run(4)  # other nodes picked


class _NoScan:
    """Nodes 1..n that may be counted and indexed but not listed: a pass over them fails."""

    def __init__(self, count):
        self.count = count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return range(1, self.count + 1)[index]

    def __iter__(self):
        raise AssertionError("a pass over every node, for each reply")


class _NodeAdds(dict):
    def __missing__(self, node):
        return float(node)


def test_free_nodes_are_drawn_without_a_pass_over_a_million_nodes_and_the_seed_fixes_them():
    def run(seed):
        grid = ScriptedGrid(0, [min] * 30)
        grid.nodes, grid.adds = _NoScan(1_000_000), _NodeAdds()
        result = FedBuff(buffer_size=2, concurrency=4, seed=seed).start(grid, MODEL, num_rounds=10)
        assert grid.most_in_flight == 4 and len(result.rounds) == 10
        return grid.sent

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_with_most_nodes_busy_the_free_ones_are_still_all_used():
    grid = ScriptedGrid(5, [min] * 30)
    result = FedBuff(buffer_size=2, concurrency=5, seed=1).start(grid, MODEL, num_rounds=10)
    assert grid.most_in_flight == 5 and len(result.rounds) == 10


def test_centralized_evaluation_runs_every_evaluate_every_versions():
    seen = []
    grid = ScriptedGrid(2, [min] * 3)
    strategy = FedBuff(
        buffer_size=1,
        concurrency=1,
        evaluate_every=2,
        evaluate_fn=lambda version, arrays: seen.append(version) or {"v": version},
    )
    result = strategy.start(grid, MODEL, num_rounds=3)
    assert seen == [0, 2, 3]
    assert [r.server_metrics.get("v") for r in result.rounds] == [0, None, 2, 3]


def test_a_grid_without_receive_first_is_named():
    class SyncOnly(ScriptedGrid):
        receive_first = Grid.receive_first

    with pytest.raises(PollinateError, match="SyncOnly does not implement receive_first"):
        FedBuff(buffer_size=1, concurrency=1).start(SyncOnly(1, []), MODEL, num_rounds=1)


def test_messages_are_plain_train_messages():
    grid = ScriptedGrid(2, [])
    config = ConfigRecord({"server-round": 1})
    (message, _) = FedBuff(buffer_size=1, concurrency=1).configure_train(
        1, MODEL, config, grid, ArrayRecord()
    )
    assert isinstance(message, Message) and message.metadata.message_type == "train"


def test_each_version_is_evaluated_by_free_nodes_and_recorded_in_version_order():
    # K=1 on two nodes, one training at a time, each adding 1. Version 1 (w = 1) goes to one
    # free node to evaluate, the other trains on it and makes version 2 (w = 2), which goes
    # to that node to evaluate. Both evaluations come in after version 2 is made, and each
    # record waits for its own (an evaluation answers the w it got).
    grid = ScriptedGrid(2, ["train", "train", "evaluate", "evaluate"], adds={1: 1.0, 2: 1.0})
    strategy = FedBuff(buffer_size=1, concurrency=1, fraction_evaluate=0.5)
    result = strategy.start(grid, MODEL, num_rounds=2)
    assert [r.server_round for r in result.rounds] == [1, 2]
    assert [r.evaluate.metrics["accuracy"] for r in result.rounds] == [1.0, 2.0]
    assert all(r.evaluate.num_ok == 1 for r in result.rounds)
    assert len(grid.evaluations) == 2 and not grid.abandoned


def test_a_failed_evaluation_is_the_version_s_evaluate_failure():
    grid = ScriptedGrid(2, ["train", ("error", 0)], adds={1: 1.0, 2: 1.0})
    grid.script[1] = lambda nodes: ("error", grid.evaluations[0])
    strategy = FedBuff(buffer_size=1, concurrency=1, fraction_evaluate=0.5)
    result = strategy.start(grid, MODEL, num_rounds=1)
    (record,) = result.rounds
    assert record.evaluate.num_ok == 0 and "TIMEOUT" in record.evaluate.failures[0].reason


def test_a_run_s_files_hold_one_line_per_version_and_a_resumed_run_adds_to_them(tmp_path):
    import json

    from pollinate.context import Context
    from pollinate.message import SERVER_NODE_ID
    from pollinate.server import load_arrays, run_server_app

    def run(script, num_rounds, resume=None):
        strategy = FedBuff(buffer_size=2, concurrency=3, staleness=polynomial(1.0))
        app = strategy.as_server_app(num_rounds, MODEL)
        context = Context(1, SERVER_NODE_ID, {}, {}, RecordDict())
        grid = ScriptedGrid(3, script)
        return run_server_app(app, grid, context, out_dir=tmp_path, resume=resume)

    first = run([1, 2, 3, 2], 2)  # x2 = 3.25, as by hand above
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["round"] for line in lines] == [1, 2]
    assert lines[1]["train"]["metrics"]["fedbuff.staleness-max"] == 1
    saved = load_arrays(tmp_path / "model.npz")
    np.testing.assert_array_equal(saved["w"].numpy(), [3.25, 3.25])
    point = ResumePoint(saved, tuple(first.rounds), 2)
    resumed = run([1, 2], 3, resume=point)
    np.testing.assert_array_equal(_w(resumed), [4.75, 4.75])
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3


def test_the_example_in_docs_strategies_md_runs():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "strategies.md").read_text()
    section = text.split("## Asynchronous: FedBuff and FedAsync")[1].split("\n## ")[0]
    namespace = {"grid": ScriptedGrid(3, [min] * 50), "initial_arrays": MODEL}
    exec(section.split("```python\n")[1].split("```")[0], namespace)
    assert isinstance(namespace["strategy"], FedAsync)
    assert len(namespace["result"].rounds) == 50


class ClockedGrid(ScriptedGrid):
    """A ScriptedGrid on a clock: each scripted reply comes 1 s after the last.

    A wait shorter than that moves the clock on by the wait and gives None, as a grid's
    ``receive_first`` does when its timeout passes first.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.t = 0.0

    def now(self):
        return self.t

    def receive_first(self, message_ids, timeout_s=None):
        if timeout_s is not None and timeout_s < 1.0:
            self.t += timeout_s
            return None
        self.t += 1.0
        return super().receive_first(message_ids, timeout_s)


def test_a_hung_node_s_task_times_out_while_the_others_answer():
    # Nodes 1 and 2 train at once from t = 0 (deadline 2.5); node 1 never answers. Node 2
    # makes versions 1 and 2 (t = 1, 2); at t = 2.5 node 1's task is abandoned and counts
    # as a failure of version 3, and node 1 is sent version 2 again.
    grid = ClockedGrid(2, [2, 2, 2])
    strategy = FedBuff(buffer_size=1, concurrency=2, staleness=constant())
    result = strategy.start(grid, MODEL, num_rounds=3, timeout_s=2.5)
    v1, v2, v3 = result.rounds
    assert not v1.train.failures and not v2.train.failures
    assert [(f.node_id, f.reason) for f in v3.train.failures] == [(1, "no reply within 2.5 s")]
    assert grid.abandoned[0] == 1 and grid.t == 3.5
    assert [(node, version) for node, _, version in grid.sent if node == 1] == [(1, 1), (1, 3)]


def test_at_most_two_versions_wait_for_their_evaluation():
    # K=1 on three nodes, one training at a time; the evaluations never come until the end.
    # When version 3 is made, version 1 is recorded with its evaluation given up, and so on.
    grid = ScriptedGrid(3, ["train"] * 4 + ["evaluate"] * 2, adds={n: 1.0 for n in (1, 2, 3)})
    strategy = FedBuff(buffer_size=1, concurrency=1, fraction_evaluate=0.3)
    result = strategy.start(grid, MODEL, num_rounds=4)
    assert [r.server_round for r in result.rounds] == [1, 2, 3, 4]
    for record, made in zip(result.rounds[:2], (3, 4), strict=True):
        assert record.evaluate.num_ok == 0
        (failure,) = record.evaluate.failures
        assert failure.reason == f"not evaluated before version {made} was made"
    assert [r.evaluate.metrics["accuracy"] for r in result.rounds[2:]] == [3.0, 4.0]
    assert len(grid.abandoned) == 2 and not grid.flight


def test_fedasync_refuses_a_staleness_that_steps_past_the_new_model():
    with pytest.raises(ConfigError, match=r"alpha \* s\(0\) = 0.6 \* 5 = 3 is over 1"):
        FedAsync(alpha=0.6, staleness=lambda tau: 5.0)


def test_fedasync_refuses_a_stale_update_mixed_in_past_the_new_model():
    grid = ScriptedGrid(2, [1, 2])  # node 2's update is 1 version stale: s(1) = 5
    strategy = FedAsync(alpha=0.5, concurrency=2, staleness=lambda tau: 1.0 + 4.0 * tau)
    with pytest.raises(ConfigError, match=r"alpha \* s\(tau\) = 0.5 \* 5 = 2.5 is over 1"):
        strategy.start(grid, MODEL, num_rounds=2)


@pytest.mark.parametrize("option", ["buffer_size", "server_learning_rate", "aggregation"])
def test_fedasync_refuses_what_only_fedbuff_takes(option):
    with pytest.raises(ConfigError, match=f"FedAsync takes no {option}: .* use FedBuff"):
        FedAsync(**{option: 1})
