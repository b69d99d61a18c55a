"""DP in the round loop: Poisson sampling, noise-only rounds, the budget stop and resuming."""

import logging

import numpy as np
import pytest

from pollinate import FedAvg
from pollinate.errors import ConfigError, RoundError
from pollinate.privacy import dp_fixed_clip, epsilon
from pollinate.server import ResumePoint, RunObserver
from pollinate.strategy import chain

from ._apps import pulling_app, run


class _Grid:
    """Just enough of a grid for sampling: ``available`` nodes, all connected."""

    def __init__(self, available):
        self.available = range(1, available + 1)

    def wait_for_nodes(self, count, timeout_s):
        return self.available


def _strategy(fraction=0.5, seed=0, **options):
    piece = dp_fixed_clip(1.0, 1.0, seed=seed)
    return FedAvg(
        fraction_train=fraction, fraction_evaluate=0.0, aggregation=chain(piece), **options
    )


def test_with_dp_each_node_is_sampled_independently_at_the_training_fraction():
    strategy, grid = _strategy(fraction=0.1), _Grid(10_000)
    samples = [strategy.sample_nodes(grid, r, 0) for r in range(1, 21)]
    sizes = np.array([len(s) for s in samples])
    # Binomial(10,000, 0.1): mean 1,000, std 30 per round; 20 rounds pool to std 6.7.
    assert abs(sizes.mean() - 1000) < 5 * 30 / np.sqrt(20)
    assert len(set(sizes.tolist())) > 1  # not a fixed size
    hits = np.zeros(10_001)
    for sample in samples:
        hits[sample] += 1
    assert hits[1:].mean() == pytest.approx(2.0, rel=0.05)  # each node: 20 x 0.1


def test_a_seeded_dp_sample_repeats_and_an_unseeded_one_comes_from_the_os():
    grid = _Grid(1000)
    assert _strategy(seed=4).sample_nodes(grid, 3, 0) == _strategy(seed=4).sample_nodes(grid, 3, 0)
    unseeded = FedAvg(fraction_train=0.5, aggregation=chain(dp_fixed_clip(1.0, 1.0)))
    assert unseeded.sample_nodes(grid, 3, 0) != unseeded.sample_nodes(grid, 3, 0)


def test_min_train_nodes_guards_the_expected_sample_size_before_sampling():
    strategy = _strategy(fraction=0.1, min_train_nodes=5)
    with pytest.raises(RoundError, match=r"2 expected, below min_train_nodes=5: raise fraction"):
        strategy.sample_nodes(_Grid(20), 1, 0)


def test_a_round_that_samples_no_node_takes_a_noise_only_step(make_grid):
    grid = make_grid(pulling_app(), num_nodes=3)
    # Seed 1 samples no node in round 1 of 3 at rate 0.2 (P = 0.51): a fixed seed, no flake.
    strategy = _strategy(fraction=0.2, seed=1, min_train_nodes=0)
    assert strategy.sample_nodes(_Grid(3), 1, 0) == []
    record = run(strategy, grid, 1).rounds[0]
    assert record.train.num_ok == 0 and not record.train.failures
    assert record.train.metrics["privacy.epsilon"] == pytest.approx(epsilon([(0.2, 1.0)], 1e-5))


def test_a_round_that_samples_fewer_than_min_train_nodes_still_goes_on(make_grid):
    grid = make_grid(pulling_app(), num_nodes=10)
    strategy = _strategy(fraction=0.3, seed=0, min_train_nodes=3)
    result = run(strategy, grid, 6)
    assert min(r.train.num_ok for r in result.rounds) < 3  # Poisson drew fewer: no resample


def test_privacy_epsilon_each_round_is_the_accountants_for_the_rounds_so_far(make_grid):
    grid = make_grid(pulling_app(), num_nodes=10)
    result = run(_strategy(fraction=0.5), grid, 4)
    for rounds, record in enumerate(result.rounds, 1):
        want = epsilon([(0.5, 1.0)] * rounds, 1e-5)
        assert record.train.metrics["privacy.epsilon"] == want
        assert record.train.metrics["privacy.delta"] == 1e-5


def test_the_run_stops_cleanly_before_a_round_that_would_pass_the_budget(make_grid, caplog):
    grid = make_grid(pulling_app(), num_nodes=10)
    budget = epsilon([(0.5, 1.0)] * 3, 1e-5) + 1e-9  # three rounds fit, a fourth does not
    piece = dp_fixed_clip(1.0, 1.0, max_epsilon=budget, seed=0)
    strategy = FedAvg(fraction_train=0.5, fraction_evaluate=0.0, aggregation=chain(piece))
    with caplog.at_level(logging.WARNING, "pollinate.strategy"):
        result = run(strategy, grid, 10)
    assert [r.server_round for r in result.rounds] == [1, 2, 3]
    assert "the run ends before round 4 of 10: the privacy budget max_epsilon" in caplog.text


def test_a_target_alone_stops_the_run_in_the_words_the_user_gave(make_grid):
    grid = make_grid(pulling_app(), num_nodes=10)
    piece = dp_fixed_clip(1.0, target_epsilon=3.0, num_rounds=3, seed=0)
    strategy = FedAvg(fraction_train=0.5, fraction_evaluate=0.0, aggregation=chain(piece))
    result = run(strategy, grid, 10)
    assert [r.server_round for r in result.rounds] == [1, 2, 3]
    assert result.stop_reason.startswith(
        "the run ended before round 4 of 10: the privacy budget target_epsilon=3 "
    )
    assert "max_epsilon" not in result.stop_reason


class _Recorder(RunObserver):
    def __init__(self):
        self.rounds, self.arrays, self.states = [], {}, {}

    def on_round(self, record):
        self.rounds.append(record)

    def on_strategy_state(self, server_round, state):
        self.states[server_round] = state

    def on_arrays(self, server_round, arrays):
        self.arrays[server_round] = arrays

    def point(self, last_round):
        rounds = tuple(r for r in self.rounds if r.server_round <= last_round)
        return ResumePoint(self.arrays[last_round], rounds, last_round, self.states[last_round])


def test_a_resumed_run_counts_the_interrupted_round_and_never_reuses_its_noise(make_grid):
    # Round 3's noised model may have reached the evaluating nodes before the server fell:
    # the redone round 3 is a second release, so it is accounted, and its noise is fresh
    # even with a seed (the same noise on another sum would give away their difference).
    grid = make_grid(pulling_app(), num_nodes=10)
    whole_run = _Recorder()
    run(_strategy(seed=8), grid, 4, observers=[whole_run])
    first_two = _Recorder()
    run(_strategy(seed=8), grid, 2, observers=[first_two])
    resumed = run(_strategy(seed=8), grid, 4, resume=first_two.point(2))
    assert len(resumed.strategy_state["a:privacy.history"].numpy()) == 5
    assert resumed.rounds[-1].train.metrics["privacy.epsilon"] == pytest.approx(
        epsilon([(0.5, 1.0)] * 5, 1e-5)
    )
    again = _Recorder()
    run(_strategy(seed=8), grid, 3, observers=[again], resume=first_two.point(2))
    assert again.arrays[3] != whole_run.arrays[3]
    # A second resume from the same point is yet another attempt: its noise is new again.
    twice = run(_strategy(seed=8), grid, 3, resume=again.point(3))
    assert len(twice.strategy_state["a:privacy.history"].numpy()) == 5


def test_resuming_a_dp_run_from_a_point_without_its_history_is_refused(make_grid):
    grid = make_grid(pulling_app(), num_nodes=10)
    plain = run(FedAvg(fraction_train=0.5, fraction_evaluate=0.0), grid, 3)
    for state in (None, plain.strategy_state or None):
        point = ResumePoint(plain.arrays, tuple(plain.rounds), 3, state)
        with pytest.raises(ConfigError, match="accounts 0 of the 3 rounds"):
            run(_strategy(seed=0), grid, 5, resume=point)


@pytest.mark.parametrize(
    ("changed", "message"),
    [({"delta": 1e-6}, "delta=1e-05"), ({"accountant": "rdp"}, "accountant='pld'")],
)
def test_a_resume_that_changes_delta_or_the_accountant_is_refused(make_grid, changed, message):
    grid = make_grid(pulling_app(), num_nodes=10)
    recorder = _Recorder()
    run(_strategy(seed=1), grid, 2, observers=[recorder])
    other = FedAvg(
        fraction_train=0.5,
        fraction_evaluate=0.0,
        aggregation=chain(dp_fixed_clip(1.0, 1.0, seed=1, **changed)),
    )
    with pytest.raises(ConfigError, match=message):
        run(other, grid, 4, resume=recorder.point(2))


def test_the_interrupted_round_is_accounted_at_the_costlier_of_the_old_and_new_settings(
    make_grid,
):
    grid = make_grid(pulling_app(), num_nodes=10)
    recorder = _Recorder()
    run(_strategy(fraction=0.5, seed=2), grid, 2, observers=[recorder])
    quieter = FedAvg(
        fraction_train=0.3,
        fraction_evaluate=0.0,
        aggregation=chain(dp_fixed_clip(1.0, 2.0, seed=2)),
    )
    resumed = run(quieter, grid, 3, resume=recorder.point(2))
    rows = resumed.strategy_state["a:privacy.history"].numpy().tolist()
    assert rows[2][:2] == [0.5, 1.0]  # the run that fell sampled more, with less noise
    assert rows[3][:2] == [0.3, 2.0]
