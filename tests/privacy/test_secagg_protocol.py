"""SecAgg+ end to end on a simulation grid: results, dropouts, and what the server learns."""

from types import SimpleNamespace

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from scipy import stats

from pollinate import ArrayRecord, ClientApp, ConfigRecord, Message, RecordDict
from pollinate.errors import ConfigError, RoundError
from pollinate.privacy import SecAggPlus, secaggplus_mod
from pollinate.privacy._secagg import _crypto, _node, _server
from pollinate.privacy._secagg._masking import pair_seed
from pollinate.simulation import ClientAppSource, InlineBackend, SimulationGrid
from pollinate.strategy import (
    Aggregator,
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    Krum,
    Scaffold,
    chain,
    norm_bound,
    trimmed_mean,
)

from .secagg_apps import RecordingGrid, delta_of, make_app, train

CLIP, LEVELS = 4.0, 2**20
STEP = 2 * CLIP / (LEVELS - 1)
SHAPES = {"w": (3, 4), "b": (5,)}
BIG = {"w": (200, 200)}


@pytest.fixture
def grid_of():
    backends = []

    def make(num_nodes, app=None, alter=None):
        backend = InlineBackend()
        backend.start(ClientAppSource(app=app or make_app()))
        backends.append(backend)
        return RecordingGrid(SimulationGrid(backend, num_nodes, run_id=1, run_config={}), alter)

    yield make
    for backend in backends:
        backend.close()


def initial(shapes=SHAPES):
    rng = np.random.default_rng(9)
    return ArrayRecord({k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()})


def secure(num_nodes, shares=5, threshold=3, **options):
    protocol = SecAggPlus(
        shares, threshold, clipping_range=CLIP, quantization_range=LEVELS, seed=1, **options
    )
    return FedAvg(
        secure_aggregation=protocol,
        min_train_nodes=num_nodes,
        min_available_nodes=num_nodes,
        fraction_evaluate=0.0,
        train_config={"delta-seed": 5},
    )


def expected(nodes, seed=5, weighted=True):
    """Plain FedAvg of the nodes' models, computed here in float64."""
    start = initial()
    weights = np.array([n if weighted else 1 for n in nodes], float)
    return {
        k: start[k].numpy().astype(np.float64)
        + sum(w * delta_of(n, seed, s) for n, w in zip(nodes, weights, strict=True)) / weights.sum()
        for k, s in SHAPES.items()
    }


def assert_close(result, want, rounds=1):
    for k in SHAPES:
        assert np.max(np.abs(result[k].numpy() - want[k])) <= rounds * STEP + 1e-6


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_secure_aggregate_equals_plain_fedavg_within_one_quantization_step(grid_of, seed):
    grid = grid_of(9)
    strategy = secure(9)
    strategy.train_config = {"delta-seed": seed}
    result = strategy.start(grid, initial(), num_rounds=1)
    assert_close(result.arrays, expected(range(1, 10), seed))
    plain_grid = grid_of(9)
    plain = FedAvg(min_train_nodes=9, fraction_evaluate=0.0, train_config={"delta-seed": seed})
    plain_result = plain.start(plain_grid, initial(), num_rounds=1)
    for k in SHAPES:
        diff = result.arrays[k].numpy() - plain_result.arrays[k].numpy()
        assert np.max(np.abs(diff)) <= STEP + 1e-6
    train = result.rounds[-1].train
    assert train.num_ok == 9 and not train.failures
    assert train.metrics["num-examples"] == sum(range(1, 10))
    assert train.metrics["secagg.count"] == 9


def test_unweighted_sums_count_each_node_once(grid_of):
    strategy = secure(5)
    strategy.secure_aggregation = SecAggPlus(
        5, 3, clipping_range=CLIP, quantization_range=LEVELS, weighted=False
    ).for_strategy("num-examples", True, 5)
    result = strategy.start(grid_of(5), initial(), num_rounds=1)
    assert_close(result.arrays, expected(range(1, 6), weighted=False))
    assert result.rounds[-1].train.metrics["num-examples"] == 5


DROPS_TOLERATED = [
    ({"setup": {2, 4}}, [1, 3, 5]),
    ({"share-keys": {1, 5}}, [2, 3, 4]),
    ({"masking": {3, 4}}, [1, 2, 5]),
    ({"unmasking": {1, 2}}, [1, 2, 3, 4, 5]),
    ({"masking": {2}, "unmasking": {5}}, [1, 3, 4, 5]),
]


@pytest.mark.parametrize(("drops", "summed"), DROPS_TOLERATED)
def test_dropouts_up_to_the_tolerated_number_are_survived_at_every_stage(grid_of, drops, summed):
    """5 nodes, 5 shares, threshold 3: any 2 may drop, at any stage."""
    grid = grid_of(5, make_app(drops))
    strategy = secure(5)
    strategy.min_train_nodes = 1
    result = strategy.start(grid, initial(), num_rounds=1)
    assert_close(result.arrays, expected(summed))
    train = result.rounds[-1].train
    assert train.num_ok == len(summed)
    dropped = {n for nodes in drops.values() for n in nodes} - set(summed)
    assert {f.node_id for f in train.failures} == dropped
    for failure in train.failures:
        assert "dropped at SecAgg+ stage" in failure.reason


@pytest.mark.parametrize("stage", ["setup", "share-keys", "masking", "unmasking"])
def test_one_dropout_too_many_fails_the_round_cleanly(grid_of, stage):
    grid = grid_of(5, make_app({stage: {1, 2, 3}}))
    strategy = secure(5)
    strategy.min_train_nodes = 1
    with pytest.raises(RoundError, match=r"SecAgg\+") as caught:
        strategy.start(grid, initial(), num_rounds=1)
    assert "too many nodes dropped" in str(caught.value)


def test_a_node_without_the_mod_is_named_in_one_error(grid_of):
    grid = grid_of(5, make_app(without_mod={2, 4}))
    with pytest.raises(RoundError, match=r"node\(s\) 2, 4 answered without secaggplus_mod"):
        secure(5).start(grid, initial(), num_rounds=1)


def test_a_round_too_small_for_num_shares_is_refused_before_any_message(grid_of):
    grid = grid_of(10)
    strategy = FedAvg(
        secure_aggregation=SecAggPlus(7, 4),
        min_train_nodes=7,
        fraction_train=0.5,
        min_available_nodes=2,
        fraction_evaluate=0.0,
    )
    strategy.min_train_nodes = 3  # as if lowered after construction: the round has 5 nodes
    with pytest.raises(
        ConfigError, match="num_shares=7 needs rounds of at least 7 nodes, but round 1 sampled 5"
    ):
        strategy.start(grid, initial(), num_rounds=1)
    assert grid.sent == []


@pytest.mark.parametrize(
    "make",
    [
        lambda p: FedAvg(
            aggregation=chain(trimmed_mean(0.1)), secure_aggregation=p, min_train_nodes=5
        ),
        lambda p: FedAvg(
            aggregation=chain(norm_bound(1.0)), secure_aggregation=p, min_train_nodes=5
        ),
        lambda p: FedMedian(secure_aggregation=p, min_train_nodes=5),
        lambda p: Krum(secure_aggregation=p, min_train_nodes=5),
        lambda p: Scaffold(secure_aggregation=p, min_train_nodes=5),
    ],
)
def test_strategies_that_need_each_update_refuse_secure_aggregation(make):
    with pytest.raises(ConfigError, match="secure aggregation gives the server only"):
        make(SecAggPlus(5, 3))


def test_server_optimizers_and_too_few_min_train_nodes():
    FedAdam(secure_aggregation=SecAggPlus(5, 3), min_train_nodes=5)  # works on the mean
    with pytest.raises(ConfigError, match="min_train_nodes=2"):
        FedAvg(secure_aggregation=SecAggPlus(5, 3))


@pytest.fixture
def seeded_nodes(monkeypatch):
    """Nodes whose keys, self-mask seeds and rounding come from a seeded generator.

    The statistical tests then see the same masked vectors every run, so they cannot flake.
    """
    rng = np.random.default_rng(2026)

    def random_bytes(count):
        return rng.bytes(count)

    def key_pair():
        private = X25519PrivateKey.from_private_bytes(random_bytes(32))
        raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return raw, _crypto.public_key(raw)

    monkeypatch.setattr(_node, "os", SimpleNamespace(urandom=random_bytes))
    monkeypatch.setattr(_server, "os", SimpleNamespace(urandom=random_bytes))
    monkeypatch.setattr(_node, "key_pair", key_pair)
    monkeypatch.setattr(_node, "secrets", SimpleNamespace(randbits=lambda bits: 7))


def masked_reply(grid, node):
    return next(r for s, r in grid.replies if s == "masking" and r.metadata.src_node_id == node)


def chi_square_p(values, modulus_bits):
    """p-value that the top byte of ``values`` (mod 2**bits) is uniform over 256 bins."""
    top = (values >> np.uint64(modulus_bits - 8)).astype(np.int64)
    counts = np.bincount(top, minlength=256)
    return stats.chisquare(counts).pvalue


def test_what_the_server_receives_from_one_node_is_indistinguishable_from_uniform(
    grid_of, seeded_nodes
):
    """Chi-square and KS tests on 40,000 masked values (seeded: the same every run), with
    the node's plain quantized update failing the same test."""
    grid = grid_of(5)
    secure(5).start(grid, initial(BIG), num_rounds=1)
    masked = masked_reply(grid, 3).content["secagg"]["masked"].numpy()[:-1]
    assert chi_square_p(masked, 64) > 0.01
    assert stats.kstest(masked / 2.0**64, "uniform").pvalue > 0.01
    plain = ((delta_of(3, 5, BIG["w"]).ravel() + CLIP) / STEP).astype(np.uint64) * np.uint64(3)
    assert chi_square_p(plain << np.uint64(43), 64) < 1e-9  # the same test tells a plain update


def test_a_curious_server_that_removed_every_pairwise_mask_still_sees_uniform_noise(
    grid_of, seeded_nodes
):
    """Even with node 3's pairwise masks removed (here with its own key, which the server
    never holds), what is left is the update plus the self mask: uniform. The self mask's
    seed is Shamir-shared, and fewer than t shares tell nothing (test_secagg_primitives)."""
    grid = grid_of(5)
    secure(5).start(grid, initial(BIG), num_rounds=1)
    state = grid.states[("masking", 3)]["secagg.node"]
    masked = np.array(masked_reply(grid, 3).content["secagg"]["masked"].numpy())
    session, sk_s = state["secagg.session"], state["sk-s"]
    for peer, pk_s in zip(state["secagg.peers"], state["secagg.peer-pk-s"], strict=True):
        if peer != 3:
            stream = _crypto.expand(pair_seed(sk_s, pk_s, session), masked.size, masked.dtype)
            masked = masked - stream if peer > 3 else masked + stream
    assert chi_square_p(masked[:-1], 64) > 0.01
    masked -= _crypto.expand(state["seed"], masked.size, masked.dtype)  # with b_3 too:
    assert masked[-1] == 3  # with b_3 as well the update is laid bare: b_3 is what protects it
    update = masked[:-1] / 3.0 * STEP - CLIP
    assert np.max(np.abs(update - delta_of(3, 5, BIG["w"]).ravel())) <= STEP + 1e-6  # float32


def _tamper_ciphertext(stage, message):
    if stage == "masking" and message.metadata.dst_node_id == 2:
        config = message.content.config()
        boxes = list(config["secagg.ciphertexts"])
        boxes[0] = boxes[0][:-1] + bytes([boxes[0][-1] ^ 1])
        config["secagg.ciphertexts"] = boxes
    return message


def _swap_public_key(stage, message):
    if stage == "share-keys" and message.metadata.dst_node_id == 4:
        config = message.content.config()
        keys = list(config["secagg.peer-pk-c"])
        keys[0] = _crypto.key_pair()[1]  # node 1's key replaced: node 4 seals for an impostor
        config["secagg.peer-pk-c"] = keys
    return message


def _wrong_round(stage, message):
    if stage == "masking" and message.metadata.dst_node_id == 5:
        message.content.config()["secagg.round"] = 7
    return message


def _both_shares(stage, message):
    if stage == "unmasking" and message.metadata.dst_node_id == 1:
        config = message.content.config()
        config["secagg.dropped"] = [*config["secagg.dropped"], 2]
    return message


@pytest.mark.parametrize(
    ("alter", "node", "reason"),
    [
        (_tamper_ciphertext, 2, "the share from node 1 failed authentication"),
        (_swap_public_key, 1, "the share from node 4 failed authentication"),
        (_wrong_round, 5, "refused stage 'masking' of round 7"),
    ],
)
def test_an_altered_message_is_refused_by_the_node(grid_of, alter, node, reason):
    grid = grid_of(5, alter=alter)
    strategy = secure(5)
    strategy.min_train_nodes = 1
    result = strategy.start(grid, initial(), num_rounds=1)
    failures = {f.node_id: f.reason for f in result.rounds[-1].train.failures}
    assert reason in failures[node]


def test_a_node_never_reveals_both_shares_of_one_peer(grid_of):
    grid = grid_of(5, alter=_both_shares)
    result = secure(5).start(grid, initial(), num_rounds=1)  # node 1's refusal is tolerated
    refusal = next(r for s, r in grid.replies if s == "unmasking" and r.metadata.src_node_id == 1)
    assert "both the self-mask and the mask-key shares of node(s) [2]" in refusal.error.reason
    assert_close(result.arrays, expected(range(1, 6)))


def test_a_replayed_message_is_refused(grid_of):
    grid = grid_of(5)
    secure(5).start(grid, initial(), num_rounds=2)
    for stage in ("setup", "share-keys", "masking"):
        old = next(
            m
            for m in grid.sent
            if m.metadata.dst_node_id == 3 and m.content.config().get("secagg.stage") == stage
        )
        replay = Message.create(RecordDict(old.content), 3, "train", run_id=1)
        (reply,) = grid.inner.send_and_receive([replay])
        assert "SecAggError" in reply.error.reason
        assert "refused" in reply.error.reason


def test_plain_messages_pass_through_the_mod():
    called = []

    def handler(message, context):
        called.append(message)
        return message.reply(RecordDict())

    message = Message.create(RecordDict({"config": ConfigRecord({"lr": 0.1})}), 1, "train")
    from pollinate import Context

    secaggplus_mod(message, Context(1, 1), handler)
    assert called == [message]


def test_a_second_run_on_the_same_nodes_starts_afresh_from_round_one(grid_of):
    """Rounds may restart (two ``start`` calls in one ServerApp): only sessions are unique."""
    grid = grid_of(5)
    secure(5).start(grid, initial(), num_rounds=1)
    result = secure(5).start(grid, initial(), num_rounds=1)
    assert_close(result.arrays, expected(range(1, 6)))


class _NoisyMean(Aggregator):
    """A stand-in for a central DP piece: the mean of node-clipped updates, plus noise.

    It works on the sum (``works_on_sum``), wants every node to weigh 1 (``unweighted``)
    and reads the node count from ``secagg.count``, as the DP pieces do.
    """

    works_on_sum = True
    unweighted = True

    def __init__(self):
        self.counts = []

    def aggregate(self, updates, current):
        (update,) = list(updates)
        self.counts.append(update.metrics["secagg.count"])
        noise = np.random.default_rng(0).normal(0, 1e-3, 1)[0]
        return ArrayRecord({k: a.numpy() + np.float32(noise) for k, a in update.arrays.items()})


def test_a_dp_style_piece_gets_an_unweighted_sum_and_the_node_count(grid_of):
    piece = _NoisyMean()
    strategy = FedAvg(
        aggregation=chain(piece),
        secure_aggregation=SecAggPlus(5, 3, clipping_range=CLIP, quantization_range=LEVELS),
        min_train_nodes=5,
        fraction_evaluate=0.0,
        train_config={"delta-seed": 5},
    )
    assert not strategy.secure_aggregation.weighted
    result = strategy.start(grid_of(5), initial(), num_rounds=1)
    assert piece.counts == [5]
    noise = np.random.default_rng(0).normal(0, 1e-3, 1)[0]
    want = {k: v + noise for k, v in expected(range(1, 6), weighted=False).items()}
    assert_close(result.arrays, want)


def test_the_vectorized_backend_is_refused_with_the_way_out():
    """A VectorizedClientApp trains nodes together and runs no mods: SecAgg+ names both."""
    pytest.importorskip("torch")
    from pollinate.simulation import make_backend

    from ..simulation import vectorized_apps

    backend = make_backend("vectorized")
    backend.start(ClientAppSource(app=vectorized_apps.app))
    try:
        grid = SimulationGrid(backend, 5, run_id=1, run_config={})
        with pytest.raises(RoundError, match="VectorizedClientApp cannot run mods"):
            secure(5).start(grid, initial(), num_rounds=1)
    finally:
        backend.close()


def test_a_node_that_shares_with_only_some_neighbours_is_left_out(grid_of):
    """Its pairwise masks would not cancel: the server drops it at share-keys."""

    def partial(message, context, call_next):
        reply = secaggplus_mod(message, context, call_next)
        config = message.content.get("config")
        if context.node_id == 2 and config.get("secagg.stage") == "share-keys":
            answer = reply.content["secagg"]
            answer["secagg.destinations"] = answer["secagg.destinations"][:-1]
            answer["secagg.ciphertexts"] = answer["secagg.ciphertexts"][:-1]
        return reply

    app = ClientApp(mods=[partial])
    app.train()(train)
    strategy = secure(5)
    strategy.min_train_nodes = 1
    result = strategy.start(grid_of(5, app), initial(), num_rounds=1)
    (failure,) = result.rounds[-1].train.failures
    assert failure.node_id == 2 and "exactly its live neighbours" in failure.reason
    assert_close(result.arrays, expected([1, 3, 4, 5]))


def test_fedprox_sends_its_config_through_the_masking_stage(grid_of):
    seen = []

    def train_seeing_config(msg, context):
        seen.append(dict(msg.content.config()))
        return train(msg, context)

    app = ClientApp(mods=[secaggplus_mod])
    app.train()(train_seeing_config)
    strategy = FedProx(
        proximal_mu=0.5,
        secure_aggregation=SecAggPlus(5, 3, clipping_range=CLIP, quantization_range=LEVELS),
        min_train_nodes=5,
        fraction_evaluate=0.0,
        train_config={"delta-seed": 5},
    )
    result = strategy.start(grid_of(5, app), initial(), num_rounds=1)
    assert_close(result.arrays, expected(range(1, 6)))
    assert len(seen) == 5
    assert all(
        c["proximal-mu"] == 0.5 and not any(k.startswith("secagg.") for k in c) for c in seen
    )
