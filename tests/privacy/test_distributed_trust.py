"""Distributed trust: the nodes clip, SecAgg+ sums, the server adds noise and accounts.

A seeded secure run must equal the same seeded chain without SecAgg+ (same Poisson sample,
same noise) within SecAgg+'s quantization error: the server saw only the sum, yet released
the same DP model, summed without the nodes' weights.
"""

import threading

import numpy as np
import pytest

from pollinate import ArrayRecord, ConfigRecord, MetricRecord
from pollinate.deploy import (
    Backoff,
    Link,
    channel_credentials,
    make_dev_certs,
    run_node,
    server_credentials,
)
from pollinate.errors import ConfigError, RoundError
from pollinate.privacy import (
    SecAggPlus,
    dp_fixed_clip,
    epsilon,
    fixed_clipping_mod,
    secaggplus_mod,
)
from pollinate.simulation import run_simulation
from pollinate.strategy import FedAvg, RoundInfo, Update, chain

from .secagg_apps import RecordingGrid
from .trust_apps import (
    SHAPE,
    claims_a_count,
    clipping_app,
    delta_of,
    make_app,
    secure_app,
    small_unclipped_app,
    stands_outside,
)

CLIP, Z, Q, NODES = 1.0, 0.3, 0.5, 30
RANGE, LEVELS = 2.0, 2**16
STEP = 2 * RANGE / (LEVELS - 1)
"""SecAgg+'s quantization step: the secure mean is within one step of the exact mean."""


def strategy(secure: bool, seed: int = 4) -> FedAvg:
    piece = dp_fixed_clip(CLIP, Z, clipped_on="nodes", seed=seed)
    protocol = SecAggPlus(5, 3, clipping_range=RANGE, quantization_range=LEVELS, seed=1)
    return FedAvg(
        fraction_train=Q,
        fraction_evaluate=0.0,
        min_train_nodes=5,
        min_available_nodes=NODES,
        aggregation=chain(piece),
        secure_aggregation=protocol if secure else None,
    )


def simulate(secure: bool, backend: str = "inline", rounds: int = 2, tmp_path=None):
    options = {"num_workers": 2} if backend == "process" else None
    return run_simulation(
        client_app=secure_app if secure else clipping_app,
        strategy=strategy(secure),
        num_rounds=rounds,
        num_nodes=NODES,
        initial_arrays=ArrayRecord({"w": np.zeros(SHAPE)}),
        backend=backend,
        backend_options=options,
        out_dir=tmp_path,
        verbose=False,
    )


@pytest.mark.parametrize("backend", ["inline", "process"])
def test_a_secure_dp_run_equals_the_same_seeded_run_without_secagg(backend, tmp_path):
    secure = simulate(True, backend, tmp_path=tmp_path / "secure")
    plain = simulate(False, tmp_path=tmp_path / "plain")
    counts = [r.train.num_ok for r in secure.rounds if r.train]
    assert counts == [r.train.num_ok for r in plain.rounds if r.train]  # the same sample
    # Each round's secure mean is off by under a step a coordinate; the DP piece scales it by
    # count / expected, and the errors of the rounds add up.
    bound = sum(n / (Q * NODES) for n in counts) * STEP
    gap = np.max(np.abs(secure.arrays["w"].numpy() - plain.arrays["w"].numpy()))
    assert gap <= bound
    assert np.max(np.abs(plain.arrays["w"].numpy())) > 100 * bound  # the check has teeth
    for t, (s, p) in enumerate(zip(secure.rounds, plain.rounds, strict=True), 1):
        assert s.train.metrics["privacy.epsilon"] == epsilon([(Q, Z)] * t, 1e-5)
        assert s.train.metrics["privacy.epsilon"] == p.train.metrics["privacy.epsilon"]
        assert s.train.metrics["secagg.count"] == s.train.num_ok


def _start(grid, strategy, rounds=1):
    return strategy.start(grid, ArrayRecord({"w": np.zeros(SHAPE)}), num_rounds=rounds)


def _all_nodes(secure: bool, **dp):
    piece = dp_fixed_clip(CLIP, 1e-9, clipped_on="nodes", seed=0, **dp)
    protocol = SecAggPlus(5, 3, clipping_range=RANGE, quantization_range=LEVELS, seed=1)
    return FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=5,
        min_available_nodes=6,
        aggregation=chain(piece),
        secure_aggregation=protocol if secure else None,
    )


def test_a_node_that_claims_a_secure_count_without_secagg_is_set_aside(make_grid):
    grid = make_grid(make_app(fixed_clipping_mod, claims_a_count), num_nodes=6)
    result = _start(grid, _all_nodes(secure=False))
    train = result.rounds[0].train
    assert train.num_ok == 5 and [f.node_id for f in train.failures] == [1]
    assert "secagg.count" in train.failures[0].reason
    honest = _start(make_grid(clipping_app, num_nodes=6), _all_nodes(secure=False))
    assert honest.rounds[0].train.num_ok == 6
    clipped_1 = delta_of(1) * min(1.0, CLIP / np.linalg.norm(delta_of(1)))
    want = honest.arrays["w"].numpy() - clipped_1 / 6  # the others' sum over 6 expected
    np.testing.assert_allclose(result.arrays["w"].numpy(), want, atol=1e-6)


def test_a_node_cannot_be_counted_twice_by_a_secure_mean_it_did_not_make():
    update = Update(
        3, ArrayRecord({"w": np.full(SHAPE, 0.1)}), 1.0, MetricRecord({"secagg.count": 50})
    )
    piece = chain(dp_fixed_clip(CLIP, 1e-12, clipped_on="nodes", seed=0))
    current = ArrayRecord({"w": np.zeros(SHAPE)})
    model, _ = piece.update([update], current, piece.init(current), RoundInfo(1, 10, 1, 0.5))
    np.testing.assert_allclose(model["w"].numpy(), 0.1 / 5, atol=1e-9)  # one node, not 50


def test_a_node_sent_count_in_a_secure_round_changes_nothing(make_grid):
    honest = _start(make_grid(secure_app, num_nodes=6), _all_nodes(secure=True))
    hostile_app = make_app(secaggplus_mod, fixed_clipping_mod, claims_a_count)
    hostile = _start(make_grid(hostile_app, num_nodes=6), _all_nodes(secure=True))
    assert hostile.rounds[0].train.metrics["secagg.count"] == 6
    gap = np.abs(hostile.arrays["w"].numpy() - honest.arrays["w"].numpy())
    assert np.max(gap) <= 6 / 6 * STEP * 2


def test_clipping_outside_secagg_fails_the_round_with_the_right_order(make_grid):
    grid = make_grid(make_app(stands_outside, secaggplus_mod), num_nodes=6)
    with pytest.raises(RoundError) as caught:
        _start(grid, _all_nodes(secure=True))
    message = str(caught.value)
    assert "mods=[secaggplus_mod, fixed_clipping_mod]" in message
    assert message.count("\n") == 0


def test_a_secure_dp_round_without_node_clipping_fails_naming_the_mod(make_grid):
    grid = make_grid(make_app(secaggplus_mod), num_nodes=6)
    with pytest.raises(RoundError, match=r"mods=\[secaggplus_mod, fixed_clipping_mod\]"):
        _start(grid, _all_nodes(secure=True))


def test_a_secure_dp_round_sums_with_weight_one_whatever_the_nodes_report(make_grid):
    strategy = _all_nodes(secure=True)
    assert strategy.secure_aggregation.weighted is False
    grid = make_grid(secure_app, num_nodes=6)
    result = _start(grid, strategy)
    # Unweighted: the clipped deltas (all at norm CLIP but node 1's, within it) each count once.
    clipped = [delta_of(n) * min(1.0, CLIP / np.linalg.norm(delta_of(n))) for n in range(1, 7)]
    want = np.sum(clipped, axis=0) / 6
    np.testing.assert_allclose(result.arrays["w"].numpy(), want, atol=6 / 6 * STEP)


def test_a_node_that_weighs_itself_in_an_unweighted_secure_round_is_refused(make_grid):
    def alter(stage, message):  # node 2 is told the sum is weighted, as a hostile node would act
        if stage == "setup" and message.metadata.dst_node_id == 2:
            message.content["config"] = ConfigRecord(
                {**message.content["config"], "secagg.weighted": True, "secagg.max-weight": 1000}
            )
        return message

    grid = RecordingGrid(make_grid(secure_app, num_nodes=6), alter)
    with pytest.raises(RoundError, match="total weight"):
        _start(grid, _all_nodes(secure=True))


def test_a_poisson_draw_too_small_for_secagg_ends_the_run_in_one_message(make_grid, monkeypatch):
    # Seed 25 draws 7 of 12 nodes in round 1 and 3 in round 2, below num_shares=5. The
    # run-wide check refuses such odds up front; turned off here to reach the round's own.
    piece = dp_fixed_clip(CLIP, 1.0, clipped_on="nodes", seed=25)
    strategy = FedAvg(
        fraction_train=0.5,
        fraction_evaluate=0.0,
        min_train_nodes=5,
        min_available_nodes=12,
        aggregation=chain(piece),
        secure_aggregation=SecAggPlus(5, 3, clipping_range=RANGE, quantization_range=LEVELS),
    )
    monkeypatch.setattr(strategy.secure_aggregation, "check_sampling", lambda *_: None)
    grid = make_grid(secure_app, num_nodes=12)
    with pytest.raises(ConfigError) as caught:
        _start(grid, strategy, rounds=2)
    message = str(caught.value)
    assert "num_shares=5 needs rounds of at least 5 nodes, but round 2 sampled 3" in message
    assert "raise fraction_train" in message


def test_distributed_trust_over_tls_equals_the_same_seeded_run_without_secagg(tmp_path):
    certs = make_dev_certs(tmp_path / "certs")
    link = Link("127.0.0.1:0", credentials=server_credentials(certs.ca_cert.parent))
    link.start()
    nodes = [
        threading.Thread(
            target=run_node,
            args=(f"localhost:{link.port}", secure_app),
            kwargs={
                "credentials": channel_credentials(certs.ca_cert),
                "backoff": Backoff(initial_s=0.05, max_s=0.2, give_up_s=5),
            },
            daemon=True,
        )
        for _ in range(10)
    ]
    for node in nodes:
        node.start()
    try:
        grid = link.grid(run_id=1, run_config={})
        grid.wait_for_nodes(10, timeout_s=30)

        # 0.9 of 10: a round below num_shares=5 is unlikely enough for the run-wide check
        def once(secure: bool):
            fedavg = strategy(secure)
            fedavg.fraction_train, fedavg.min_available_nodes = 0.9, 10
            return fedavg.start(grid, ArrayRecord({"w": np.zeros(SHAPE)}), num_rounds=2)

        secure, plain = once(True), once(False)
    finally:
        link.stop(grace_s=0.5)
        for node in nodes:
            node.join(timeout=10)
    counts = [r.train.num_ok for r in secure.rounds if r.train]
    assert counts == [r.train.num_ok for r in plain.rounds if r.train]
    assert all(r.train.metrics["secagg.count"] == r.train.num_ok for r in secure.rounds)
    bound = sum(n / (0.9 * 10) for n in counts) * STEP
    gap = np.max(np.abs(secure.arrays["w"].numpy() - plain.arrays["w"].numpy()))
    assert gap <= bound
    want = [epsilon([(0.9, Z)] * t, 1e-5) for t in (1, 2)]
    assert [r.train.metrics["privacy.epsilon"] for r in secure.rounds] == want


# -- a Poisson-sampled (DP) run whose rounds may draw fewer nodes than num_shares ----------


def _dp_secure(num_shares: int = 17, fraction: float = 0.1) -> FedAvg:
    return FedAvg(
        fraction_train=fraction,
        fraction_evaluate=0.0,
        min_train_nodes=20,
        aggregation=chain(dp_fixed_clip(1.0, 1.0, clipped_on="nodes", seed=1)),
        secure_aggregation=SecAggPlus(num_shares, 9),
    )


def test_a_run_likely_to_draw_a_round_below_num_shares_is_refused_before_round_1():
    with pytest.raises(ConfigError) as caught:
        run_simulation(
            client_app=secure_app,
            strategy=_dp_secure(),
            num_rounds=100,
            num_nodes=200,
            initial_arrays=ArrayRecord({"w": np.zeros(SHAPE)}),
            verbose=False,
        )
    message = str(caught.value)
    assert "num_shares=17" in message and "200 nodes" in message and "100 rounds" in message
    assert "fraction_train" in message and "add nodes" in message
    assert "round 1 sampled" not in message  # refused before any round was drawn


@pytest.mark.parametrize(("nodes", "refused"), [(200, True), (300, True), (400, False)])
def test_the_chance_of_a_short_round_is_bounded_over_the_run(nodes, refused):
    protocol = _dp_secure().secure_aggregation
    assert protocol is not None
    if refused:
        with pytest.raises(ConfigError, match=r"probability"):
            protocol.check_sampling(nodes, 0.1, 100)
    else:
        protocol.check_sampling(nodes, 0.1, 100)


def test_a_short_poisson_round_no_longer_says_raise_min_train_nodes():
    protocol = _dp_secure().secure_aggregation
    with pytest.raises(ConfigError) as caught:
        protocol._round_params(1, 16)
    assert "min_train_nodes" not in str(caught.value)


def test_a_node_without_fixed_clipping_mod_is_caught_even_when_its_update_is_small(make_grid):
    grid = make_grid(small_unclipped_app, num_nodes=25)
    strategy = _all_nodes(secure=True)
    strategy.min_available_nodes = 25
    with pytest.raises(RoundError) as caught:
        _start(grid, strategy)
    message = str(caught.value)
    assert "mods=[secaggplus_mod, fixed_clipping_mod]" in message
    assert message.count("fixed_clipping_mod") == 2, message  # the fix said once, not per node


def test_nodes_that_all_drop_for_the_same_reason_are_told_the_fix_once(make_grid):
    strategy = FedAvg(
        fraction_evaluate=0.0,
        min_train_nodes=25,
        secure_aggregation=SecAggPlus(5, 3, clipping_range=RANGE, quantization_range=LEVELS),
    )  # no DP on the server: every node's fixed_clipping_mod finds no clip norm
    with pytest.raises(RoundError) as caught:
        _start(make_grid(secure_app, num_nodes=25), strategy)
    message = str(caught.value)
    assert message.count("clipped_on='nodes'") == 1, message
    assert "nodes 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 (and 15 more): dropped" in message, message
