"""Central DP pieces: clip each delta, sum unweighted, add noise, divide by the expected count."""

import math
import os

import numpy as np
import pytest

from pollinate import ArrayRecord, FedAvg, MetricRecord
from pollinate.errors import ConfigError, RoundError
from pollinate.privacy import dp_adaptive_clip, dp_fixed_clip
from pollinate.strategy import (
    RoundInfo,
    Update,
    UpdateFilter,
    chain,
    krum,
    norm_bound,
    server_momentum,
)

from ._apps import pulling_app, run

CURRENT = ArrayRecord({"w": np.zeros(3), "steps": np.array([7], np.int64)})


def _update(node, delta, weight=1.0, **metrics):
    arrays = ArrayRecord({"w": np.asarray(delta, np.float64), "steps": np.array([99], np.int64)})
    return Update(node, arrays, weight, MetricRecord({"num-examples": weight, **metrics}))


def _round(piece, updates, current=CURRENT, available=4, q=0.5, server_round=1, state=None):
    """One round of ``piece`` on ``updates``: the model and the state after it."""
    aggregation = chain(piece)
    state = aggregation.init(current) if state is None else state
    info = RoundInfo(server_round, available, len(updates), q)
    return aggregation.update(updates, current, state, info)


def test_deltas_are_clipped_summed_unweighted_and_divided_by_the_expected_count():
    piece = dp_fixed_clip(clip_norm=1.0, noise_multiplier=1e-12, seed=0)
    short = [0.3, 0.4, 0.0]  # norm 0.5: kept
    long = [0.0, 6.0, 8.0]  # norm 10: clipped to norm 1
    model, _ = _round(piece, [_update(1, short, 5.0), _update(2, long, 1000.0)])
    expected = (np.array(short) + np.array(long) / 10) / (0.5 * 4)  # weights ignored
    np.testing.assert_allclose(model["w"].numpy(), expected, atol=1e-9)


def test_integer_arrays_stay_as_the_global_model_has_them():
    model, _ = _round(dp_fixed_clip(1.0, 1.0, seed=0), [_update(1, [1.0, 0, 0])])
    assert model["steps"].numpy().tolist() == [7]


def test_the_noise_std_is_z_times_the_clip_over_the_expected_count():
    current = ArrayRecord({"w": np.zeros(200_000, np.float32)})
    piece = dp_fixed_clip(clip_norm=0.5, noise_multiplier=2.0, seed=11)
    model, _ = _round(piece, [], current=current, available=8, q=0.5)  # a noise-only step
    noise = model["w"].numpy().astype(np.float64)
    # std 2 x 0.5 / 4 = 0.25; 200,000 draws estimate it to 0.16%: 2% cannot flake.
    assert noise.std() == pytest.approx(0.25, rel=0.02)
    assert abs(noise.mean()) < 5 * 0.25 / math.sqrt(noise.size)


def test_os_noise_is_gaussian_with_the_same_std():
    current = ArrayRecord({"w": np.zeros(200_000)})
    model, _ = _round(dp_fixed_clip(0.5, 2.0), [], current=current, available=8, q=0.5)
    noise = model["w"].numpy() / 0.25
    assert noise.std() == pytest.approx(1.0, rel=0.02)
    assert np.mean(np.abs(noise) < 1) == pytest.approx(0.6827, abs=0.01)  # 1 sigma
    assert np.mean(np.abs(noise) < 2) == pytest.approx(0.9545, abs=0.005)  # 2 sigma


def test_the_same_seed_gives_the_same_noise_bit_for_bit_and_another_seed_other_noise():
    updates = [_update(1, [1.0, 2.0, 3.0]), _update(2, [0.1, 0.0, 0.0])]
    first, _ = _round(dp_fixed_clip(1.0, 1.0, seed=5), updates)
    again, _ = _round(dp_fixed_clip(1.0, 1.0, seed=5), updates)
    other, _ = _round(dp_fixed_clip(1.0, 1.0, seed=6), updates)
    assert first["w"].numpy().tobytes() == again["w"].numpy().tobytes()
    assert first["w"].numpy().tobytes() != other["w"].numpy().tobytes()


def test_each_round_appends_its_sampling_rate_noise_multiplier_and_clip_to_the_history():
    piece = dp_fixed_clip(1.0, 1.5, seed=0)
    _, state = _round(piece, [_update(1, [1.0, 0, 0])], q=0.25, available=8)
    _, state = _round(piece, [], q=0.25, available=8, server_round=2, state=state)
    assert state["a:privacy.history"].numpy().tolist() == [[0.25, 1.5, 1.0]] * 2
    metrics = chain(piece).metrics(state)
    assert metrics["privacy.noise-multiplier"] == 1.5 and metrics["privacy.sampling-rate"] == 0.25


def test_a_secure_mean_counts_as_its_nodes_when_the_nodes_clip_and_as_one_update_otherwise():
    mean = _update(0, [0.3, 0.0, 0.0], **{"secagg.count": 3})  # the mean of 3 clipped deltas
    on_nodes = dp_fixed_clip(1.0, 1e-12, clipped_on="nodes", seed=0)
    model, _ = _round(on_nodes, [mean], q=0.5, available=6)
    np.testing.assert_allclose(model["w"].numpy(), [3 * 0.3 / 3, 0, 0], atol=1e-9)
    on_server = dp_fixed_clip(1.0, 1e-12, seed=0)  # a node's claim to be a sum is ignored
    model, _ = _round(on_server, [mean], q=0.5, available=6)
    np.testing.assert_allclose(model["w"].numpy(), [0.3 / 3, 0, 0], atol=1e-9)


def test_adaptive_clipping_moves_the_clip_to_the_target_quantile_of_the_norms():
    rng = np.random.default_rng(0)
    piece = dp_adaptive_clip(
        noise_multiplier=0.05,
        initial_clip_norm=0.1,
        target_quantile=0.7,
        count_noise_std=1.0,
        seed=1,
    )
    aggregation = chain(piece)
    state = aggregation.init(CURRENT)
    norms = rng.lognormal(mean=0.0, sigma=0.5, size=(300, 100))
    for server_round, round_norms in enumerate(norms, 1):
        updates = [_update(i, [n, 0.0, 0.0]) for i, n in enumerate(round_norms)]
        info = RoundInfo(server_round, 100, 100, 1.0)
        _, state = aggregation.update(updates, CURRENT, state, info)
    clip = float(state["a:privacy.next-clip-norm"].numpy())
    quantile = float(np.exp(0.5 * 0.5244))  # the lognormal's 70% quantile
    assert clip == pytest.approx(quantile, rel=0.1)


def test_adaptive_clipping_leaves_the_update_the_noise_the_total_does_not_spend_on_the_count():
    current = ArrayRecord({"w": np.zeros(200_000)})
    piece = dp_adaptive_clip(1.0, initial_clip_norm=2.0, count_noise_std=2.0, seed=3)
    model, state = _round(piece, [], current=current, available=8, q=0.5)
    z_update = (1.0 - (2 * 2.0) ** -2) ** -0.5  # z^-2 = z_update^-2 + (2 s)^-2
    assert model["w"].numpy().std() == pytest.approx(z_update * 2.0 / 4, rel=0.02)
    assert chain(piece).metrics(state)["privacy.noise-multiplier"] == 1.0  # the total


def test_too_little_count_noise_for_the_noise_multiplier_is_a_clear_round_error():
    piece = dp_adaptive_clip(noise_multiplier=2.0, seed=0)
    with pytest.raises(RoundError, match=r"count noise std > z / 2 = 1.*give count_noise_std"):
        _round(piece, [_update(1, [1.0, 0, 0])], available=10, q=0.5)  # 5 / 20 = 0.25


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: dp_fixed_clip(1.0), "give either noise_multiplier or target_epsilon"),
        (lambda: dp_fixed_clip(1.0, 1.0, target_epsilon=3.0), "not both"),
        (lambda: dp_fixed_clip(1.0, target_epsilon=3.0), "target_epsilon needs num_rounds"),
        (lambda: dp_fixed_clip(0.0, 1.0), "clip_norm must be positive"),
        (lambda: dp_fixed_clip(1.0, 1.0, clipped_on="both"), "clipped_on must be"),
        (lambda: dp_fixed_clip(1.0, 1.0, delta=0.0), "delta must be between 0 and 1"),
        (lambda: dp_fixed_clip(1.0, 1.0, seed=-1), "seed must be a whole number"),
        (lambda: dp_adaptive_clip(1.0, target_quantile=1.0), "target_quantile must be between"),
    ],
)
def test_bad_arguments_are_one_clear_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_outside_a_strategy_round_the_piece_says_where_it_belongs():
    piece = dp_fixed_clip(1.0, 1.0)
    with pytest.raises(ConfigError, match=r"FedAvg\(aggregation=chain"):
        chain(piece).update([_update(1, [1.0, 0, 0])], CURRENT, chain(piece).init(CURRENT))


def test_the_pieces_show_their_arguments():
    assert repr(dp_fixed_clip(1.0, 1.2, seed=3, clipped_on="nodes")) == (
        "dp_fixed_clip(clip_norm=1.0, noise_multiplier=1.2, delta=1e-05, seed=3, "
        "clipped_on='nodes')"
    )
    assert repr(dp_adaptive_clip(target_epsilon=3.0, num_rounds=10, accountant="rdp")) == (
        "dp_adaptive_clip(target_epsilon=3.0, num_rounds=10, delta=1e-05, accountant='rdp', "
        "initial_clip_norm=0.1, target_quantile=0.5, clip_learning_rate=0.2)"
    )


def test_a_dp_chain_composes_with_a_server_optimizer_and_reports_privacy_each_round(make_grid):
    grid = make_grid(pulling_app(), num_nodes=20)
    aggregation = chain(dp_fixed_clip(1.0, 1.0, seed=2), server_momentum(0.9))
    strategy = FedAvg(fraction_train=0.5, fraction_evaluate=0.0, aggregation=aggregation)
    result = run(strategy, grid, 3)
    epsilons = [r.train.metrics["privacy.epsilon"] for r in result.rounds]
    assert epsilons == sorted(epsilons) and epsilons[0] > 0
    assert {"a:privacy.history", "0:0/w"} <= set(result.strategy_state)


def test_a_filter_that_compares_updates_may_not_come_before_dp():
    FedAvg(aggregation=chain(norm_bound(3.0), dp_fixed_clip(1.0, 1.0)))  # per update: fine
    with pytest.raises(ConfigError) as caught:
        FedAvg(min_train_nodes=5, aggregation=chain(krum(1), dp_fixed_clip(1.0, 1.0)))
    message = str(caught.value)
    assert (
        "krum(num_malicious_nodes=1) compares updates with each other, so one node could "
        "change which others count; DP needs each node's influence bounded" in message
    )
    assert "streaming" not in message


def test_a_dp_piece_with_another_aggregator_says_the_dp_piece_replaces_the_mean():
    from pollinate.strategy import median

    for pieces in [(median(), dp_fixed_clip(1.0, 1.0)), (dp_fixed_clip(1.0, 1.0), median())]:
        with pytest.raises(ConfigError, match="replaces the mean") as caught:
            chain(*pieces)
        assert "cannot be combined with differential privacy" in str(caught.value)


def test_too_little_count_noise_is_refused_before_any_node_trains(make_grid):
    trained = []

    def spy(message, context, call_next):
        trained.append(context.node_id)
        return call_next(message, context)

    grid = make_grid(pulling_app(mods=(spy,)), num_nodes=10)
    piece = dp_adaptive_clip(target_epsilon=3.0, num_rounds=20, seed=0)
    strategy = FedAvg(
        fraction_train=0.5, fraction_evaluate=0.0, min_train_nodes=1, aggregation=chain(piece)
    )
    with pytest.raises(RoundError, match=r"\(expected nodes 5 / 20\)"):
        run(strategy, grid, 3)
    assert trained == []


def test_count_noise_std_too_small_for_the_noise_multiplier_is_refused_when_built():
    with pytest.raises(ConfigError, match=r"z / 2 = 1 .*count_noise_std=0.5") as caught:
        dp_adaptive_clip(2.0, count_noise_std=0.5)
    assert "expected nodes" not in str(caught.value)


def test_a_given_count_noise_std_too_small_for_a_calibrated_z_is_not_blamed_on_the_count():
    piece = dp_adaptive_clip(target_epsilon=3.0, num_rounds=20, count_noise_std=0.1, seed=0)
    with pytest.raises(RoundError, match=r"count_noise_std=0\.1") as caught:
        chain(piece).aggregator.check_round(RoundInfo(1, 10, 5, 0.5))
    assert "expected nodes" not in str(caught.value)


def test_an_unreachable_target_epsilon_is_refused_when_the_strategy_is_built():
    piece = dp_fixed_clip(1.0, target_epsilon=1e-4, num_rounds=1000)
    with pytest.raises(ConfigError, match="cannot be reached in 1000 rounds"):
        FedAvg(fraction_train=0.5, aggregation=chain(piece))


def test_numpy_scalars_are_numbers_to_the_pieces():
    piece = dp_fixed_clip(np.float32(1.0), np.float64(1.0), delta=np.float64(1e-5))
    assert piece.clip_norm == 1.0
    planned = dp_fixed_clip(1.0, target_epsilon=np.float32(3.0), num_rounds=np.int64(10))
    assert planned.plan.num_rounds == 10
    adaptive = dp_adaptive_clip(np.float32(1.0), target_quantile=np.float32(0.5))
    assert adaptive.target_quantile == 0.5


def test_a_per_update_filter_not_marked_streaming_is_told_what_to_set():
    class Halve(UpdateFilter):  # handles each update alone, but does not say so
        def filter_one(self, update, current):
            return update

    with pytest.raises(ConfigError, match="streaming = True"):
        chain(Halve(), dp_fixed_clip(1.0, 1.0)).check(1)


def test_os_noise_is_the_sum_of_four_box_muller_draws_over_two(monkeypatch):
    # Holohan and Braghin 2021 (Opacus's secure_mode): a sum of four draws blurs the
    # floating-point traces of any one Box-Muller draw that Jin et al. 2021 attack.
    from pollinate.privacy import _noise

    taken, urandom = [], os.urandom

    def counted(n):
        taken.append(n)
        return urandom(n)

    monkeypatch.setattr(_noise.os, "urandom", counted)
    draws = _noise.NoiseSource(None).normals(1, 1)(1000)
    assert draws.shape == (1000,)
    assert sum(taken) == 4 * 1000 * 8  # a Box-Muller pair: 16 bytes, two draws


@pytest.mark.parametrize(
    "make_piece",
    [
        lambda: dp_fixed_clip(1.0, 1.0, delta=0.05, seed=0),
        lambda: dp_adaptive_clip(1.0, delta=0.05, seed=0),
    ],
)
def test_a_delta_of_one_over_the_population_or_more_is_refused_before_any_node_trains(
    make_grid, make_piece
):
    trained = []

    def spy(message, context, call_next):
        trained.append(context.node_id)
        return call_next(message, context)

    grid = make_grid(pulling_app(mods=(spy,)), num_nodes=20)
    piece = make_piece()
    strategy = FedAvg(
        fraction_train=0.5, fraction_evaluate=0.0, min_train_nodes=1, aggregation=chain(piece)
    )
    with pytest.raises(ConfigError, match=r"delta=0\.05 is at least 1 / 20 .*delta=0\.001"):
        run(strategy, grid, 3)
    assert trained == []


def test_a_delta_below_one_over_the_population_is_accepted():
    chain(dp_fixed_clip(1.0, 1.0, delta=0.049)).aggregator.check_round(RoundInfo(1, 20, 10, 0.5))
