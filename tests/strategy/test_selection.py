"""FedAvg's round deadline and over-selection: wait less, fold the first replies to arrive."""

import numpy as np
import pytest

from pollinate.errors import ConfigError
from pollinate.server import Grid
from pollinate.strategy import FedAvg


class _LastSentFirst(Grid):
    """A simulation grid whose replies arrive in reverse send order, recording each wait."""

    def __init__(self, grid):
        self.grid = grid
        self.timeouts = []
        self.closed_early = False

    @property
    def run_id(self):
        return self.grid.run_id

    def node_ids(self):
        return self.grid.node_ids()

    def send(self, messages):
        return self.grid.send(messages)

    def receive(self, message_ids, timeout_s=None):
        self.timeouts.append(timeout_s)
        replies = list(self.grid.receive(message_ids, timeout_s))
        replies.sort(key=lambda r: -r.metadata.src_node_id)
        try:
            yield from replies
        except GeneratorExit:
            self.closed_early = True
            raise

    def receive_in_order(self, message_ids, timeout_s=None):
        self.timeouts.append(timeout_s)
        return self.grid.receive_in_order(message_ids, timeout_s)


@pytest.fixture
def by_node(make_grid, good_reply):
    """A grid of 6 nodes where node n trains to a model of n (NaN for the nodes in ``bad``)."""

    def make(bad=()):
        def train(msg, context):
            node = context.node_id
            return good_reply(msg, value=np.nan if node in bad else float(node), num_examples=1)

        return _LastSentFirst(make_grid(train, num_nodes=6))

    return make


def _one_round(strategy, grid, arrays):
    return strategy.start(grid, arrays, num_rounds=1, timeout_s=100.0)


def test_over_selection_folds_the_first_replies_to_arrive(by_node, global_arrays):
    grid = by_node()
    strategy = FedAvg(fraction_train=0.5, fraction_evaluate=0.0, over_selection=0.5, seed=3)
    result = _one_round(strategy, grid, global_arrays)
    # 3 needed, ceil(4.5) = 5 sent; replies come last-sent first, so the 3 highest sent ids count
    sent = sorted(strategy.sample_nodes(grid, 1, 0))
    assert len(sent) == 5
    kept = sent[-3:]
    assert np.allclose(result.arrays["w"].numpy(), np.mean(kept))
    train = result.rounds[-1].train
    assert train.num_ok == 3 and train.metrics["selection.unused"] == 2
    assert grid.closed_early  # the two left over were abandoned, not waited for


def test_a_reply_set_aside_does_not_count_towards_those_kept(by_node, global_arrays):
    strategy = FedAvg(fraction_train=0.5, fraction_evaluate=0.0, over_selection=1.0, seed=3)
    sent = sorted(strategy.sample_nodes(by_node(), 1, 0))
    assert len(sent) == 6
    grid = by_node(bad={6})  # the first to arrive is not finite
    result = _one_round(strategy, grid, global_arrays)
    assert np.allclose(result.arrays["w"].numpy(), np.mean([5, 4, 3]))
    train = result.rounds[-1].train
    assert (train.num_ok, train.num_failed, train.metrics["selection.unused"]) == (3, 1, 2)


def test_without_over_selection_replies_fold_in_send_order(by_node, global_arrays):
    grid = by_node()
    result = _one_round(FedAvg(fraction_evaluate=0.0), grid, global_arrays)
    assert np.allclose(result.arrays["w"].numpy(), np.mean(range(1, 7)))
    assert "selection.unused" not in result.rounds[-1].train.metrics
    assert grid.timeouts == [100.0]


@pytest.mark.parametrize(("deadline", "waited"), [(5.0, 5.0), (500.0, 100.0)])
def test_the_round_deadline_shortens_the_wait_for_train_replies(
    by_node, global_arrays, deadline, waited
):
    grid = by_node()
    strategy = FedAvg(min_evaluate_nodes=0, round_deadline_s=deadline)
    _one_round(strategy, grid, global_arrays)
    assert grid.timeouts == [waited, 100.0]  # training waits less; evaluation as before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"round_deadline_s": 0.0}, "round_deadline_s must be positive"),
        ({"over_selection": -0.1}, "over_selection must be between 0 and 10"),
    ],
)
def test_bad_settings_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        FedAvg(**options)


def test_over_selection_is_refused_with_dp_and_secure_aggregation():
    from pollinate.privacy import SecAggPlus, dp_fixed_clip
    from pollinate.strategy import chain

    dp = chain(dp_fixed_clip(clip_norm=1.0, noise_multiplier=1.0, seed=0))
    with pytest.raises(ConfigError, match="Poisson-sampled"):
        FedAvg(aggregation=dp, fraction_train=0.5, over_selection=0.2)
    with pytest.raises(ConfigError, match="whole round's cohort"):
        FedAvg(secure_aggregation=SecAggPlus(5, 3), min_train_nodes=5, over_selection=0.2)
    FedAvg(aggregation=dp, fraction_train=0.5, round_deadline_s=10.0)  # a deadline is fine


def test_repr_names_the_settings():
    text = repr(FedAvg(round_deadline_s=30.0, over_selection=0.3))
    assert "round_deadline_s=30.0" in text and "over_selection=0.3" in text


def test_scaffold_refuses_over_selection_and_a_bool_is_no_share():
    from pollinate.strategy import Scaffold

    with pytest.raises(ConfigError, match="Scaffold cannot over-select"):
        Scaffold(over_selection=0.3)
    Scaffold(round_deadline_s=30.0)
    with pytest.raises(ConfigError, match="over_selection must be between 0 and 10"):
        FedAvg(over_selection=True)
    with pytest.raises(ConfigError, match="round_deadline_s must be positive"):
        FedAvg(round_deadline_s=True)


@pytest.mark.parametrize("timeout_s", [float("nan"), 0.0, -1.0, True, "60"])
def test_a_timeout_that_is_no_positive_number_is_refused(by_node, global_arrays, timeout_s):
    from pollinate.strategy import FedBuff

    for strategy in (FedAvg(), FedBuff(buffer_size=1, concurrency=2)):
        with pytest.raises(ConfigError, match="timeout_s must be a number of seconds above 0"):
            strategy.start(by_node(), global_arrays, num_rounds=1, timeout_s=timeout_s)


def test_a_lone_piece_as_aggregation_is_wrapped_in_the_message():
    from pollinate.privacy import dp_fixed_clip
    from pollinate.strategy import FedBuff, krum

    with pytest.raises(ConfigError, match=r"write aggregation=chain\(dp_fixed_clip\(clip_norm="):
        FedAvg(aggregation=dp_fixed_clip(1.0, 1.0))
    with pytest.raises(ConfigError, match=r"write aggregation=chain\(krum\("):
        FedBuff(aggregation=krum(1))
    with pytest.raises(ConfigError, match="must be made with chain"):
        FedAvg(aggregation="median")
