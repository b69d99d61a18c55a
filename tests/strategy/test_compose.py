"""chain(): filters, one aggregator and server optimizers compose without new classes."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pollinate import ArrayRecord, FedAvg, MetricRecord
from pollinate.errors import ConfigError
from pollinate.strategy._compose import (
    Aggregator,
    ServerOptimizer,
    Update,
    UpdateFilter,
    chain,
    weighted_average,
)


def _update(node_id, value, weight=1.0):
    arrays = ArrayRecord({"w": np.full(3, value, np.float32), "b": np.full(2, value, np.float32)})
    return Update(node_id, arrays, weight, MetricRecord({"num-examples": weight}))


CURRENT = ArrayRecord({"w": np.zeros(3, np.float32), "b": np.zeros(2, np.float32)})


class _DropNegative(UpdateFilter):
    streaming = True

    def filter_one(self, update, current):
        return None if update.arrays["w"].numpy()[0] < 0 else update


class _KeepLargest(UpdateFilter):
    """A whole-round filter: keeps the update with the largest first value."""

    def filter(self, updates, current):
        return [max(updates, key=lambda u: u.arrays["w"].numpy()[0])]


class _First(Aggregator):
    def aggregate(self, updates, current):
        return next(iter(updates)).arrays


class _Halfway(ServerOptimizer):
    """Steps halfway to the aggregate; its state counts the steps."""

    def init(self, arrays):
        return ArrayRecord({"steps": np.array(0)})

    def update(self, current, aggregate, state):
        halfway = {k: (current[k].numpy() + aggregate[k].numpy()) / 2 for k in current}
        return ArrayRecord(halfway), ArrayRecord({"steps": state["steps"].numpy() + 1})


def aggregate(aggregation, updates, current=CURRENT):
    """One round of ``aggregation`` from its starting state: the new model only."""
    model, _ = aggregation.update(updates, current, aggregation.init(current))
    return model


def test_the_default_chain_is_fedavgs_weighted_average_and_streams():
    aggregation = chain()
    assert aggregation.streaming and aggregation.is_default
    assert repr(aggregation) == "chain(weighted_average())"
    mean = aggregate(aggregation, iter([_update(1, 1.0, 1.0), _update(2, 4.0, 2.0)]))
    np.testing.assert_allclose(mean["w"].numpy(), np.full(3, 3.0))


def test_filters_run_in_order_before_the_aggregator_and_optimizers_after_it():
    updates = [_update(1, -5.0), _update(2, 2.0), _update(3, 6.0)]
    aggregation = chain(_DropNegative(), _KeepLargest(), _First(), _Halfway())
    assert not aggregation.streaming  # _KeepLargest needs the whole round
    state = aggregation.init(CURRENT)
    assert list(state) == ["0:steps"]
    result, after = aggregation.update(updates, CURRENT, state)
    np.testing.assert_allclose(result["w"].numpy(), np.full(3, 3.0))  # (0 + 6) / 2
    assert after["0:steps"].numpy() == 1 and state["0:steps"].numpy() == 0


def test_a_streaming_chain_never_holds_the_round():
    seen = []

    def updates():
        for i, value in enumerate([1.0, 2.0, -1.0, 3.0]):
            seen.append(value)
            yield _update(i, value)

    aggregation = chain(_DropNegative())
    assert aggregation.streaming
    mean = aggregate(aggregation, updates())
    np.testing.assert_allclose(mean["w"].numpy(), np.full(3, 2.0))
    assert seen == [1.0, 2.0, -1.0, 3.0]


def test_a_round_whose_updates_are_all_filtered_out_keeps_no_aggregate():
    aggregation = chain(_DropNegative(), _Halfway())
    state = aggregation.init(CURRENT)
    model, after = aggregation.update([_update(1, -1.0)], CURRENT, state)
    assert model is None and after is state  # no step: the state stays as it was


@pytest.mark.parametrize(
    ("pieces", "message"),
    [
        ((weighted_average(), _DropNegative()), "filters go first"),
        ((weighted_average(), _First()), "two aggregators"),
        ((_Halfway(), _First()), "optimizers go last"),
        ((lambda updates: None,), "not a filter, an aggregator or a server optimizer"),
    ],
)
def test_a_chain_in_the_wrong_order_is_refused_with_the_rule(pieces, message):
    with pytest.raises(ConfigError, match=message):
        chain(*pieces)


def test_pieces_check_the_rounds_they_will_get_before_the_first_round():
    class _NeedsFive(UpdateFilter):
        def check(self, min_train_nodes):
            if min_train_nodes < 5:
                raise ConfigError(f"needs 5 updates a round, min_train_nodes={min_train_nodes}")

    with pytest.raises(ConfigError, match="min_train_nodes=2"):
        FedAvg(aggregation=chain(_NeedsFive()))
    FedAvg(aggregation=chain(_NeedsFive()), min_train_nodes=5)
    with pytest.raises(ConfigError, match="made with chain"):
        FedAvg(aggregation=[_NeedsFive()])


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-1e3, 1e3), st.floats(0.1, 1e3)),
        min_size=1,
        max_size=8,
    )
)
def test_the_streamed_weighted_average_equals_the_batch_formula(pairs):
    updates = [_update(i, value, weight) for i, (value, weight) in enumerate(pairs)]
    mean = aggregate(chain(), iter(updates))
    values = np.array([v for v, _ in pairs], np.float64)
    weights = np.array([w for _, w in pairs], np.float64)
    expected = np.float32((values * weights).sum() / weights.sum())
    np.testing.assert_allclose(mean["w"].numpy(), np.full(3, expected), rtol=1e-5, atol=1e-3)


def test_fedavg_with_the_default_chain_reports_its_plain_repr_and_a_custom_one_shows_it():
    assert "aggregation" not in repr(FedAvg())
    assert "aggregation=chain(_" not in repr(FedAvg(aggregation=chain(_First())))
    assert "aggregation=chain(" in repr(FedAvg(aggregation=chain(_First())))


def test_the_custom_pieces_docs_strategies_md_shows_run_and_keep_their_state(
    make_grid, global_arrays, good_reply
):
    text = (Path(__file__).parents[2] / "docs" / "strategies.md").read_text()
    section = text.split("### Writing your own pieces")[1].split("\n## ")[0]
    namespace = {}
    for block in section.split("```python\n")[1:]:
        exec(block.split("```")[0], namespace)
    assert isinstance(namespace["strategy"], FedAvg)
    pieces = chain(namespace["CapWeight"](1000), namespace["Lookahead"](0.5))
    strategy = FedAvg(aggregation=pieces, fraction_evaluate=0.0)
    result = strategy.start(make_grid(good_reply), global_arrays, num_rounds=2)
    assert result.strategy_state["0:steps"].numpy() == 2
    np.testing.assert_allclose(result.arrays["w"].numpy(), 0.75)  # 0 -> 0.5 -> 0.75 toward 1


def test_the_custom_strategy_docs_strategies_md_shows_saves_each_round(
    make_grid, global_arrays, good_reply, tmp_path
):
    text = (Path(__file__).parents[2] / "docs" / "strategies.md").read_text()
    section = text.split("### Writing your own strategy")[1].split("\n## ")[0]
    namespace = {}
    exec(section.split("```python\n")[1].split("```")[0], namespace)
    strategy = namespace["SaveEachRound"](tmp_path, fraction_evaluate=0.0)
    strategy.start(make_grid(good_reply), global_arrays, num_rounds=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round-0001.npz", "round-0002.npz"]


def test_a_chain_says_which_pieces_need_each_update_and_whether_it_weighs_nodes():
    from pollinate.strategy import median, norm_bound, server_adam

    assert chain().needs_each_update() == [] and not chain().unweighted
    assert chain(server_adam(eta=0.1)).needs_each_update() == []
    clip, middle = norm_bound(1.0), median()
    assert chain(clip, middle).needs_each_update() == [clip, middle]
    assert chain(weighted_average(use_weights=False)).unweighted

    class Noisy(Aggregator):
        works_on_sum = True
        unweighted = True

        def aggregate(self, updates, current):
            return None

    assert chain(Noisy()).needs_each_update() == [] and chain(Noisy()).unweighted
