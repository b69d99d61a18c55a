import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pollinate import ArrayRecord, MetricRecord, RecordDict
from pollinate.errors import ConfigError, RoundError
from pollinate.strategy._compose import Update, chain
from pollinate.strategy._robust import (
    Bulyan,
    FedMedian,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
    bulyan,
    krum,
    median,
    multi_krum,
    norm_bound,
    trimmed_mean,
)


def record(**arrays):
    return ArrayRecord({name: np.asarray(a) for name, a in arrays.items()})


def updates_of(*models, weights=None):
    """One Update per model (a dict of arrays, or one array named "w"), node ids 0, 1, ..."""
    weights = weights or [1.0] * len(models)
    return [
        Update(i, record(**(m if isinstance(m, dict) else {"w": m})), w, MetricRecord())
        for i, (m, w) in enumerate(zip(models, weights, strict=True))
    ]


def scalars(*values, dtype=np.float64):
    """Updates of one 1-element array "w" holding each value in turn."""
    return updates_of(*(np.array([v], dtype) for v in values))


ZERO = record(w=np.zeros(1))


def aggregate(aggregation, updates, current):
    """The model a stateless chain makes of one round."""
    model, _ = aggregation.update(updates, current, ArrayRecord())
    return model


def kept_values(kept):
    return [float(u.arrays["w"].numpy()[0]) for u in kept]


def delta_norm(update, current):
    return math.sqrt(
        sum(
            float(np.sum((update.arrays[k].numpy().astype(float) - a.numpy()) ** 2))
            for k, a in current.items()
        )
    )


# --- hand-computed references -----------------------------------------------------------


def test_median_is_coordinate_wise():
    rows = updates_of(np.array([1.0, 10.0]), np.array([2.0, 20.0]), np.array([100.0, -5.0]))
    out = median().aggregate(rows, record(w=np.zeros(2)))
    np.testing.assert_array_equal(out["w"].numpy(), [2.0, 10.0])


def test_median_of_an_even_count_is_the_middle_pair_mean():
    assert median().aggregate(scalars(1, 2, 3, 10), ZERO)["w"].numpy()[0] == 2.5


def test_median_ignores_weights():
    rows = updates_of(*(np.array([v]) for v in (1.0, 2.0, 50.0)), weights=[1, 1, 1e9])
    assert median().aggregate(rows, ZERO)["w"].numpy()[0] == 2.0


def test_median_casts_back_to_each_dtype():
    current = record(i=np.zeros(1, np.int32), b=np.zeros(1, bool), c=np.zeros(1, np.complex64))
    models = [
        {
            "i": np.array([1], np.int32),
            "b": np.array([True]),
            "c": np.array([1 + 5j], np.complex64),
        },
        {
            "i": np.array([2], np.int32),
            "b": np.array([False]),
            "c": np.array([2 + 1j], np.complex64),
        },
        {
            "i": np.array([7], np.int32),
            "b": np.array([True]),
            "c": np.array([3 + 3j], np.complex64),
        },
    ]
    out = median().aggregate(updates_of(*models), current)
    assert out["i"].numpy().dtype == np.int32 and out["i"].numpy()[0] == 2
    assert out["b"].numpy().dtype == bool and out["b"].numpy()[0]
    assert out["c"].numpy().dtype == np.complex64 and out["c"].numpy()[0] == 2 + 3j


def test_median_of_integers_is_rounded():
    out = median().aggregate(scalars(1, 2, 4, 9, dtype=np.int64), record(w=np.zeros(1, np.int64)))
    assert out["w"].numpy()[0] == 3  # the median 3.0


def test_trimmed_mean_drops_the_extremes_of_each_coordinate():
    rows = updates_of(
        *(np.array(r) for r in ([1.0, -50], [2.0, 0], [3.0, 1], [4.0, 2], [100.0, 3]))
    )
    out = trimmed_mean(0.2).aggregate(rows, record(w=np.zeros(2)))  # cuts 1 from each end
    np.testing.assert_allclose(out["w"].numpy(), [3.0, 1.0])


def test_trimmed_mean_cuts_nothing_below_one_value_per_end():
    out = trimmed_mean(0.1).aggregate(scalars(1, 2, 3, 4, 100), ZERO)  # floor(0.5) = 0
    assert out["w"].numpy()[0] == 22.0


def test_trimmed_mean_cut_is_floor_of_beta_n_without_float_error():
    values = [float(i * i) for i in range(100)]
    out = trimmed_mean(0.29).aggregate(scalars(*values), ZERO)  # 0.29 * 100 == 28.999...
    assert out["w"].numpy()[0] == pytest.approx(np.mean(values[29:71]))


def test_krum_keeps_the_update_closest_to_its_neighbours():
    # f=1, n=5: scores over the 2 nearest: 0 -> 5, 1 -> 2, 2 -> 5, 10 -> 145, -20 -> 841
    kept = krum(1).filter(scalars(0, 1, 2, 10, -20), ZERO)
    assert kept_values(kept) == [1.0]


def test_multi_krum_keeps_n_minus_f_by_default_in_send_order():
    kept = multi_krum(1).filter(scalars(-20, 0, 1, 2, 10), ZERO)
    assert kept_values(kept) == [0.0, 1.0, 2.0, 10.0]


def test_multi_krum_breaks_a_score_tie_by_the_next_neighbours():
    # 0 and 2 tie at score 5; with a third neighbour: 0 -> 105, 2 -> 69
    kept = multi_krum(1, num_nodes_to_keep=2).filter(scalars(0, 1, 2, 10, -20), ZERO)
    assert [u.node_id for u in kept] == [1, 2]


def test_multi_krum_breaks_a_full_tie_by_send_order():
    # -1 and 1 are mirror images: equal at every neighbourhood, the earlier is kept
    kept = multi_krum(1, num_nodes_to_keep=2).filter(scalars(-10, -1, 0, 1, 10), ZERO)
    assert [u.node_id for u in kept] == [1, 2]


def test_multi_krum_then_the_weighted_average():
    rows = updates_of(
        *(np.array([v]) for v in (0.0, 1.0, 2.0, 10.0, -20.0)), weights=[1, 3, 1, 1, 1]
    )
    out = aggregate(
        chain(multi_krum(1, num_nodes_to_keep=2)), rows, ZERO
    )  # keeps 1.0 (weight 3) and 2.0 (weight 1)
    assert out["w"].numpy()[0] == pytest.approx(1.25)


def test_krum_distances_sum_over_layers():
    # per layer, update 2 looks central in "a" but far off in "b"
    models = [
        {"a": np.array([0.0]), "b": np.array([0.0])},
        {"a": np.array([1.0]), "b": np.array([0.0])},
        {"a": np.array([0.5]), "b": np.array([9.0])},
        {"a": np.array([0.2]), "b": np.array([0.1])},
        {"a": np.array([0.9]), "b": np.array([0.2])},
    ]
    kept = krum(1).filter(updates_of(*models), record(a=np.zeros(1), b=np.zeros(1)))
    assert [u.node_id for u in kept] == [3]


def test_bulyan_selects_by_krum_then_averages_around_the_median():
    # Krum picks (4, 3, 2 nearest, then 1): 12, 14, 11; then 17 (tied with 10 at 49, but
    # nearer 40) and 40 (tied with 10 at 900, but nearer 1000). Stage 2 keeps the 3 of
    # {11, 12, 14, 17, 40} nearest the median 14: 14, 12 and (a tie at 3) the smaller, 11
    out = bulyan(1).aggregate(scalars(10, 11, 12, 14, 17, 40, 1000), ZERO)
    assert out["w"].numpy()[0] == pytest.approx(37 / 3)


def test_bulyan_without_malicious_nodes_is_the_plain_mean():
    rows = updates_of(*(np.array([v]) for v in (1.0, 2.0, 6.0)), weights=[1, 1, 100])
    assert bulyan(0).aggregate(rows, ZERO)["w"].numpy()[0] == 3.0


def test_norm_bound_scales_a_long_delta_to_the_bound():
    current = record(w=np.array([1.0, 0.0]), b=np.array([1.0]))
    (update,) = updates_of({"w": np.array([4.0, 0.0]), "b": np.array([5.0])})  # delta (3, 0, 4)
    out = norm_bound(1.0).filter_one(update, current)
    np.testing.assert_allclose(out.arrays["w"].numpy(), [1.6, 0.0])
    np.testing.assert_allclose(out.arrays["b"].numpy(), [1.8])
    assert (out.node_id, out.weight) == (update.node_id, update.weight)


def test_norm_bound_leaves_an_update_within_the_bound_as_it_is():
    (update,) = updates_of(np.array([0.3, 0.4]))
    assert norm_bound(0.5).filter_one(update, record(w=np.zeros(2))) is update


def test_norm_bound_keeps_dtypes_and_leaves_integer_arrays_alone():
    current = record(w=np.zeros(2, np.float32), steps=np.zeros(1, np.int64))
    (update,) = updates_of({"w": np.array([3, 4], np.float32), "steps": np.array([100])})
    out = norm_bound(1.0).filter_one(update, current)
    assert out.arrays["w"].dtype == np.float32
    np.testing.assert_allclose(out.arrays["w"].numpy(), [0.6, 0.8], rtol=1e-6)
    assert out.arrays["steps"].numpy()[0] == 100


def test_norm_bound_clips_a_delta_too_long_for_float64():
    (update,) = updates_of(np.array([1e308, -1e308]))
    out = norm_bound(2.0).filter_one(update, record(w=np.array([-1e308, 1e308])))
    np.testing.assert_allclose(out.arrays["w"].numpy(), [-1e308, 1e308])  # moved by ~1.4
    assert np.isfinite(out.arrays["w"].numpy()).all()
    (update,) = updates_of(np.array([1e308, -1e308]))
    out = norm_bound(2.0).filter_one(update, record(w=np.zeros(2)))
    np.testing.assert_allclose(out.arrays["w"].numpy(), [math.sqrt(2), -math.sqrt(2)])


def test_norm_bound_streams_and_krum_does_not():
    assert chain(norm_bound(1.0)).streaming
    assert not chain(norm_bound(1.0), krum(0)).streaming


def test_reprs():
    pieces = [norm_bound(5.0), median(), trimmed_mean(0.1), krum(2), multi_krum(1), bulyan(1)]
    assert [repr(p) for p in pieces] == [
        "norm_bound(max_norm=5.0)",
        "median()",
        "trimmed_mean(beta=0.1)",
        "krum(num_malicious_nodes=2)",
        "multi_krum(num_malicious_nodes=1)",
        "bulyan(num_malicious_nodes=1)",
    ]
    assert repr(multi_krum(1, 3)) == "multi_krum(num_malicious_nodes=1, num_nodes_to_keep=3)"
    assert repr(chain(multi_krum(1))) == (
        "chain(multi_krum(num_malicious_nodes=1), weighted_average())"
    )


# --- properties -------------------------------------------------------------------------

FLOATS = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def tied_rounds(draw, min_n=1):
    """Updates of one small array whose values may tie, and a permutation of them."""
    n = draw(st.integers(min_n, 8))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))
    models = [draw(hnp.arrays(np.float64, shape, elements=FLOATS)) for _ in range(n)]
    return updates_of(*models), record(w=np.zeros(shape)), draw(st.permutations(range(n)))


@st.composite
def gaussian_rounds(draw, min_n=3):
    """Updates of 1-3 arrays of distinct random values (no ties), and a permutation of them."""
    n = draw(st.integers(min_n, 9))
    shapes = draw(st.lists(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3), max_size=3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    current = ArrayRecord({f"l{i}": np.zeros(s) for i, s in enumerate(shapes or [(2,)])})
    models = [{k: rng.normal(size=a.shape) for k, a in current.items()} for _ in range(n)]
    return updates_of(*models), current, draw(st.permutations(range(n)))


def assert_same_record(left, right):
    assert list(left) == list(right)
    for name in left:
        np.testing.assert_array_equal(left[name].numpy(), right[name].numpy())


@given(tied_rounds(), st.sampled_from([0.0, 0.1, 0.25, 0.49]))
def test_order_statistics_ignore_the_reply_order(round_, beta):
    rows, current, order = round_
    shuffled = [rows[i] for i in order]
    for aggregator in (median(), trimmed_mean(beta)):
        assert_same_record(
            aggregator.aggregate(rows, current), aggregator.aggregate(shuffled, current)
        )


@given(tied_rounds(), st.sampled_from([0.0, 0.2, 0.4]))
def test_median_and_trimmed_mean_stay_within_the_inputs(round_, beta):
    rows, current, _ = round_
    stacked = np.stack([u.arrays["w"].numpy() for u in rows])
    slack = 1e-9 * (1 + np.abs(stacked).max())
    for aggregator in (median(), trimmed_mean(beta)):
        out = aggregator.aggregate(rows, current)["w"].numpy()
        assert (out >= stacked.min(axis=0) - slack).all()
        assert (out <= stacked.max(axis=0) + slack).all()


@settings(max_examples=50)
@given(gaussian_rounds(min_n=3), st.integers(0, 3))
def test_krum_selection_ignores_the_reply_order(round_, f):
    rows, current, order = round_
    shuffled = [rows[i] for i in order]
    for piece in (krum(f), multi_krum(f), multi_krum(f, num_nodes_to_keep=1 + f % 2)):
        if len(rows) < max(2 * f + 3, 1 + f % 2 + f):
            continue
        kept = {u.node_id for u in piece.filter(rows, current)}
        assert kept == {u.node_id for u in piece.filter(shuffled, current)}


@settings(max_examples=50)
@given(gaussian_rounds(min_n=3), st.integers(0, 1))
def test_bulyan_ignores_the_reply_order(round_, f):
    rows, current, order = round_
    if len(rows) < 4 * f + 3:
        return
    shuffled = [rows[i] for i in order]
    assert_same_record(bulyan(f).aggregate(rows, current), bulyan(f).aggregate(shuffled, current))


@pytest.mark.parametrize(
    "aggregation",
    [
        chain(median()),
        chain(trimmed_mean(0.3)),
        chain(krum(1)),
        chain(multi_krum(1)),
        chain(bulyan(1)),
        chain(norm_bound(1e-3), median()),
    ],
    ids=repr,
)
@pytest.mark.parametrize("n", [7, 8])
def test_identical_updates_give_that_update(aggregation, n):
    model = {
        "w": np.array([[0.1, -2.5], [3.0, 1e-7]], np.float32),
        "i": np.array([3, -4], np.int64),
        "b": np.array([True, False]),
    }
    current = ArrayRecord(model)  # norm_bound: no delta from the current model
    out = aggregate(aggregation, updates_of(*[model] * n), current)
    assert_same_record(out, current)


@given(gaussian_rounds(min_n=1), st.floats(1e-3, 10))
def test_norm_bound_output_is_within_the_bound(round_, max_norm):
    rows, current, _ = round_
    for update in rows:
        out = norm_bound(max_norm).filter_one(update, current)
        assert delta_norm(out, current) <= max_norm * (1 + 1e-9)


# --- layer by layer ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "aggregation",
    [
        chain(median()),
        chain(trimmed_mean(0.2)),
        chain(krum(1)),
        chain(multi_krum(1, num_nodes_to_keep=3)),
        chain(bulyan(1)),
        chain(norm_bound(2.0)),
    ],
    ids=repr,
)
def test_several_layers_give_what_one_concatenated_layer_gives(aggregation):
    rng = np.random.default_rng(7)
    shapes = {"a": (2, 3), "b": (4,), "c": ()}
    models = [{k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(9)]
    layered = aggregate(
        aggregation, updates_of(*models), ArrayRecord({k: np.zeros(s) for k, s in shapes.items()})
    )
    flat_models = [np.concatenate([np.ravel(m[k]) for k in shapes]) for m in models]
    flat = aggregate(aggregation, updates_of(*flat_models), record(w=np.zeros(11)))
    joined = np.concatenate([np.ravel(layered[k].numpy()) for k in shapes])
    np.testing.assert_allclose(joined, flat["w"].numpy(), rtol=1e-12)


# --- preconditions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: trimmed_mean(0.5), r"beta must be at least 0 and below 0.5 .*, got 0.5"),
        (lambda: trimmed_mean(-0.1), r"beta must be at least 0 and below 0.5"),
        (lambda: trimmed_mean(float("nan")), r"beta must be at least 0 and below 0.5"),
        (lambda: krum(-1), r"krum: num_malicious_nodes must be a whole number 0 or more"),
        (lambda: krum(1.5), r"must be a whole number 0 or more, got 1.5"),
        (lambda: bulyan(True), r"bulyan: num_malicious_nodes must be a whole number"),
        (
            lambda: multi_krum(1, num_nodes_to_keep=0),
            r"num_nodes_to_keep must be a whole number 1 or more",
        ),
        (lambda: norm_bound(0), r"max_norm must be positive and finite, got 0"),
        (lambda: norm_bound(float("inf")), r"max_norm must be positive and finite"),
        (lambda: norm_bound(-1.0), r"max_norm must be positive and finite"),
        (lambda: FedTrimmedAvg(beta=0.5), r"beta must be at least 0 and below 0.5"),
        (lambda: Krum(num_malicious_nodes=-2), r"must be a whole number 0 or more, got -2"),
    ],
)
def test_bad_parameters_fail_when_built(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_krum_with_too_few_train_nodes_fails_at_construction():
    message = (
        r"krum\(num_malicious_nodes=2\) needs at least 2f \+ 3 = 7 updates a round \(f: "
        r"num_malicious_nodes\), but min_train_nodes=6: raise min_train_nodes to 7 or lower "
        r"num_malicious_nodes"
    )
    with pytest.raises(ConfigError, match=message):
        Krum(num_malicious_nodes=2, min_train_nodes=6)
    with pytest.raises(ConfigError, match=r"min_train_nodes=2: raise min_train_nodes to 3$"):
        Krum(num_malicious_nodes=0, min_train_nodes=2)  # f is 0 already: no "lower f"
    Krum(num_malicious_nodes=2, min_train_nodes=7)


def test_robust_presets_wait_for_as_many_nodes_as_their_rule_needs_by_default():
    assert (Krum().min_train_nodes, Krum().min_available_nodes) == (3, 2)
    assert Krum(num_malicious_nodes=2).min_train_nodes == 7
    assert MultiKrum(num_malicious_nodes=1, num_nodes_to_keep=5).min_train_nodes == 6
    assert Bulyan(num_malicious_nodes=1).min_train_nodes == 7
    waits = []

    class _Grid:
        run_id = 1

        def wait_for_nodes(self, count, timeout):
            waits.append(count)
            return list(range(1, count + 1))

    Bulyan(num_malicious_nodes=1, min_train_nodes=9).sample_nodes(_Grid(), 1, 0)
    assert waits == [9]  # a train round waits for min_train_nodes, above min_available_nodes


def test_bulyan_and_multi_krum_check_their_round_size():
    with pytest.raises(
        ConfigError, match=r"bulyan\(num_malicious_nodes=1\) needs at least 4f \+ 3 = 7 updates"
    ):
        Bulyan(num_malicious_nodes=1, min_train_nodes=6)
    with pytest.raises(
        ConfigError, match=r"m \+ f = 6 updates .* min_train_nodes=5: .* lower num_nodes_to_keep"
    ):
        MultiKrum(num_malicious_nodes=1, num_nodes_to_keep=5, min_train_nodes=5)
    MultiKrum(num_malicious_nodes=1, num_nodes_to_keep=4, min_train_nodes=5)
    Bulyan(num_malicious_nodes=1, min_train_nodes=7)


def test_a_round_with_too_few_updates_is_a_round_error():
    with pytest.raises(
        RoundError, match=r"krum\(num_malicious_nodes=1\) needs at least 5 valid updates .* got 4"
    ):
        krum(1).filter(scalars(1, 2, 3, 4), ZERO)
    with pytest.raises(
        RoundError,
        match=r"multi_krum\(num_malicious_nodes=1, num_nodes_to_keep=5\) needs at least 6 valid",
    ):
        multi_krum(1, num_nodes_to_keep=5).filter(scalars(1, 2, 3, 4, 5), ZERO)
    with pytest.raises(
        RoundError, match=r"bulyan\(num_malicious_nodes=1\) needs at least 7 valid updates .* got 6"
    ):
        bulyan(1).aggregate(scalars(1, 2, 3, 4, 5, 6), ZERO)


def test_order_statistics_of_no_updates_are_none():
    assert median().aggregate([], ZERO) is None
    assert trimmed_mean(0.1).aggregate([], ZERO) is None


def test_presets_are_fedavg_with_their_chain():
    assert repr(FedMedian().aggregation) == "chain(median())"
    assert repr(FedTrimmedAvg().aggregation) == "chain(trimmed_mean(beta=0.2))"
    assert "aggregation=chain(krum(num_malicious_nodes=1)" in repr(
        Krum(num_malicious_nodes=1, min_train_nodes=5)
    )
    strategy = MultiKrum(num_malicious_nodes=1, num_nodes_to_keep=2, min_train_nodes=5)
    assert repr(strategy.aggregation) == (
        "chain(multi_krum(num_malicious_nodes=1, num_nodes_to_keep=2), "
        "weighted_average(use_weights=False))"
    )
    assert strategy.min_train_nodes == 5 and strategy.num_malicious_nodes == 1


# --- end to end -------------------------------------------------------------------------


def test_multi_krum_ignores_a_node_sending_a_huge_model(make_grid, global_arrays):
    def train(msg, context):
        value = 1e6 if context.node_id == 3 else 1.0 + context.node_id / 100
        arrays = ArrayRecord(
            {k: np.full(a.shape, value, a.dtype) for k, a in global_arrays.items()}
        )
        metrics = MetricRecord({"num-examples": 10})
        return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))

    strategy = MultiKrum(
        num_malicious_nodes=1, min_train_nodes=5, min_available_nodes=5, fraction_evaluate=0.0
    )
    result = strategy.start(make_grid(train, num_nodes=5), global_arrays, num_rounds=2)
    assert len(result.rounds) == 2
    for array in result.arrays.values():
        np.testing.assert_allclose(array.numpy(), (1.01 + 1.02 + 1.04 + 1.05) / 4, rtol=1e-6)


def test_multi_krum_averages_the_kept_models_without_the_weights_nodes_claim():
    values = [0.01 * i for i in range(6)] + [0.15, 0.15]
    weights = [1.0] * 6 + [1e6, 1e6]  # two attackers claim a huge weight
    rows = updates_of(*(np.array([v]) for v in values), weights=weights)
    result = aggregate(MultiKrum(num_malicious_nodes=2).aggregation, rows, ZERO)
    assert result["w"].numpy()[0] < 0.1  # their claimed weights did not pull the mean to 0.15


def test_a_trimming_share_a_hair_below_one_half_still_leaves_a_value():
    result = trimmed_mean(0.4999999999999).aggregate(scalars(1.0, 3.0), ZERO)
    assert np.isfinite(result["w"].numpy()).all()


def test_a_clipping_filter_before_an_order_statistic_clips_each_update_as_it_comes():
    seen = []

    def stream():
        for i, row in enumerate(scalars(100.0, 1.0, 2.0)):
            seen.append(i)
            yield row

    result = aggregate(chain(norm_bound(1.0), median()), stream(), ZERO)
    assert seen == [0, 1, 2]
    assert np.abs(result["w"].numpy()).max() <= 1.0


@pytest.mark.parametrize(
    ("strategy", "options"),
    [
        (FedMedian, {}),
        (FedTrimmedAvg, {}),
        (Krum, {"min_train_nodes": 5}),
        (MultiKrum, {"min_train_nodes": 5}),
        (Bulyan, {"min_train_nodes": 5}),
    ],
)
def test_robust_strategy_given_a_chain_says_what_to_use_instead(strategy, options):
    from pollinate.privacy import dp_fixed_clip

    aggregation = chain(dp_fixed_clip(1.0, 1.0))
    with pytest.raises(ConfigError) as caught:
        strategy(aggregation=aggregation, **options)
    message = str(caught.value)
    assert f"{strategy.__name__} " in message
    assert "FedAvg(aggregation=chain(dp_fixed_clip(...)))" in message
    assert "cannot be combined with differential privacy" in message
