"""SecAgg+ against a hostile server or node: what the review found, each refused or survived.

``Hand`` drives real nodes (a ClientApp with ``secaggplus_mod``) stage by stage, as a
server would, so a test can send what no honest server sends.
"""

import os

import numpy as np
import pytest

from pollinate import (
    ArrayRecord,
    ClientApp,
    ConfigRecord,
    FedAvg,
    Message,
    MetricRecord,
    RecordDict,
)
from pollinate.context import Context
from pollinate.errors import ConfigError, RoundError
from pollinate.message import ErrorCode
from pollinate.privacy import SecAggPlus, SecAggPlusMod, secaggplus_mod
from pollinate.privacy._secagg import _shamir
from pollinate.privacy._secagg._masking import apply_masks, pair_seed
from pollinate.simulation import run_simulation

SETTINGS = {
    "secagg.threshold": 3,
    "secagg.clipping-range": 1.0,
    "secagg.quantization-range": 2**16,
    "secagg.modulus-bits": 32,
    "secagg.max-weight": 1,
    "secagg.weight-key": "num-examples",
    "secagg.weighted": False,
}
MODEL = ArrayRecord({"w": np.zeros(4, np.float32)})


def _train(msg, context):
    arrays = msg.content.arrays()
    out = {name: (a.numpy() + 0.1 * context.node_id).astype(a.dtype) for name, a in arrays.items()}
    return msg.reply(
        RecordDict({"arrays": ArrayRecord(out), "metrics": MetricRecord({"num-examples": 1})})
    )


class Hand:
    """A hand-driven server for ``graph`` (node -> neighbours), one round of one session."""

    def __init__(self, graph, mod=secaggplus_mod, train=_train, settings=None):
        self.graph = graph
        self.app = ClientApp(mods=[mod])
        self.app.train()(train)
        self.contexts = {node: Context(1, node) for node in graph}
        self.session = os.urandom(16)
        self.settings = {**SETTINGS, **(settings or {})}
        self.keys: dict[int, tuple[bytes, bytes]] = {}

    def send(self, node, values, arrays=None, server_round=1):
        config = {"secagg.round": server_round, "secagg.session": self.session, **values}
        content = RecordDict({"config": ConfigRecord(config)})
        if arrays is not None:
            content["arrays"] = arrays
        return self.app(Message.create(content, node, "train", run_id=1), self.contexts[node])

    def ok(self, node, values, arrays=None):
        reply = self.send(node, values, arrays)
        assert not reply.has_error, reply.error
        return reply.content["secagg"]

    def setup(self):
        for node, hood in self.graph.items():
            answer = self.ok(
                node, {"secagg.stage": "setup", **self.settings, "secagg.neighbours": hood}
            )
            self.keys[node] = (answer["secagg.pk-c"], answer["secagg.pk-s"])

    def share_keys(self):
        boxes = {node: [] for node in self.graph}
        for node, hood in self.graph.items():
            peers = sorted([node, *hood])
            answer = self.ok(
                node,
                {
                    "secagg.stage": "share-keys",
                    "secagg.peers": peers,
                    "secagg.peer-pk-c": [self.keys[p][0] for p in peers],
                    "secagg.peer-pk-s": [self.keys[p][1] for p in peers],
                },
            )
            for dst, box in zip(
                answer["secagg.destinations"], answer["secagg.ciphertexts"], strict=True
            ):
                boxes[dst].append((node, box))
        return boxes

    def until_masking(self):
        """Every stage up to masking, honestly; each node's masked vector."""
        self.setup()
        boxes = self.share_keys()
        return {
            node: self.ok(
                node,
                {
                    "secagg.stage": "masking",
                    "secagg.sources": [s for s, _ in boxes[node]],
                    "secagg.ciphertexts": [b for _, b in boxes[node]],
                },
                MODEL,
            )["masked"].numpy()
            for node in self.graph
        }

    def unmask(self, node, active, dropped):
        values = {"secagg.stage": "unmasking", "secagg.active": active, "secagg.dropped": dropped}
        return self.send(node, values)


def complete(count):
    nodes = range(1, count + 1)
    return {node: [j for j in nodes if j != node] for node in nodes}


def refusal(reply):
    assert reply.has_error
    return reply.error.reason


# -- H1: a server that lies about who dropped ------------------------------------------------


def test_a_node_refuses_to_unmask_a_sum_of_fewer_than_threshold_of_its_neighbourhood():
    hand = Hand(complete(5))
    hand.until_masking()
    reason = refusal(hand.unmask(1, [1], [2, 3, 4, 5]))
    assert "only 1 node(s) in the sum" in reason and "threshold 3" in reason


def test_a_node_refuses_a_survivor_story_that_is_not_its_live_neighbourhood():
    hand = Hand(complete(5))
    hand.until_masking()
    assert "not the neighbours that shared keys with it" in refusal(hand.unmask(1, [1, 2, 3], [4]))
    reply = hand.unmask(2, [1, 2, 3], [4, 5])  # an honest request is answered
    assert not reply.has_error


def test_the_dropout_lie_of_the_review_no_longer_rebuilds_the_neighbours_mask_keys():
    """The server tells node 1 it is in the sum and 1's neighbours' holders that they dropped."""
    hand = Hand(complete(5))
    hand.until_masking()
    stories = {
        1: ([1], [2, 3, 4, 5]),
        2: ([1, 2], [3, 4, 5]),
        3: ([1, 3], [2, 4, 5]),
        4: ([4], [2, 3, 5]),
        5: ([5], [2, 3, 4]),
    }
    key_shares: dict[int, dict[int, bytes]] = {}
    for node, (active, dropped) in stories.items():
        reply = hand.unmask(node, active, dropped)
        if reply.has_error:
            continue
        answer = reply.content["secagg"]
        for owner, share in zip(
            answer["secagg.key-owners"], answer["secagg.key-shares"], strict=True
        ):
            key_shares.setdefault(owner, {})[node] = share
    assert all(len(key_shares.get(owner, {})) < 3 for owner in (2, 3, 4, 5))
    with pytest.raises(ValueError):
        _shamir.combine(key_shares.get(2, {}), 3, 32)[0]


def test_what_the_checks_do_not_stop_each_neighbourhood_told_a_different_consistent_story():
    """The residual risk docs/secure-aggregation.md states: without Bell et al.'s signed
    consistency round, a lying server still reads node 6's update on an 11-node ring."""
    count, x = 11, 6

    def at(node, offset):
        return (node - 1 + offset) % count + 1

    ring = {i: sorted(at(i, d) for d in (-2, -1, 1, 2)) for i in range(1, count + 1)}
    hand = Hand(ring)
    masked = hand.until_masking()
    stories = {  # node: (told in the sum, told dropped): each an honest server could send
        x: ([x, at(x, -1), at(x, 1)], [at(x, -2), at(x, 2)]),
        at(x, 1): ([at(x, 1), x, at(x, 3)], [at(x, -1), at(x, 2)]),
        at(x, -1): ([at(x, -1), x, at(x, -3)], [at(x, 1), at(x, -2)]),
        at(x, 2): ([at(x, 2), at(x, 3), at(x, 4), x], [at(x, 1)]),
        at(x, -2): ([at(x, -2), at(x, -3), at(x, -4), x], [at(x, -1)]),
        at(x, 3): ([at(x, 3), at(x, 4), at(x, 5)], [at(x, 1), at(x, 2)]),
        at(x, -3): ([at(x, -3), at(x, -4), at(x, -5)], [at(x, -1), at(x, -2)]),
    }
    seeds, keys = {}, {}
    for node, (active, dropped) in stories.items():
        reply = hand.unmask(node, sorted(active), sorted(dropped))
        assert not reply.has_error, reply.error
        answer = reply.content["secagg"]
        for owner, share in zip(
            answer["secagg.seed-owners"], answer["secagg.seed-shares"], strict=True
        ):
            seeds.setdefault(owner, {})[node] = share
        for owner, share in zip(
            answer["secagg.key-owners"], answer["secagg.key-shares"], strict=True
        ):
            keys.setdefault(owner, {})[node] = share
    vector = masked[x].copy()
    apply_masks(vector, [(-1, _shamir.combine(seeds[x], 3, 32)[0])])
    for j in ring[x]:
        seed = pair_seed(_shamir.combine(keys[j], 3, 32)[0], hand.keys[x][1], hand.session)
        apply_masks(vector, [(-1 if x < j else 1, seed)])
    update = vector[:-1] * (2.0 / (2**16 - 1)) - 1.0
    assert np.allclose(update, 0.1 * x, atol=1e-4)


# -- H2: a non-finite or out-of-range update --------------------------------------------------


def _strategy(num_nodes, shares=5, threshold=3, **options):
    protocol = SecAggPlus(shares, threshold, clipping_range=1.0, seed=1, **options)
    return FedAvg(
        secure_aggregation=protocol,
        min_train_nodes=num_nodes,
        min_available_nodes=num_nodes,
        fraction_evaluate=0.0,
    )


def _app(train=_train, mods=(secaggplus_mod,)):
    app = ClientApp(mods=list(mods))
    app.train()(train)
    return app


def _start(make_grid, app, num_nodes=5, strategy=None):
    grid = make_grid(app, num_nodes)
    start = ArrayRecord({"w": np.zeros(3, np.float32)})
    return (strategy or _strategy(num_nodes)).start(grid, start, num_rounds=1)


@pytest.mark.parametrize("bits", [32, 64])
def test_a_node_with_a_non_finite_update_refuses_it_and_drops(make_grid, bits):
    def diverged(msg, context):
        reply = _train(msg, context)
        if context.node_id == 1:
            w = reply.content["arrays"]["w"].numpy().copy()
            w[1] = np.nan
            reply.content["arrays"] = ArrayRecord({"w": w})
        return reply

    strategy = _strategy(5, modulus_range=2**bits, quantization_range=2**16)
    strategy.min_train_nodes = 1
    result = _start(make_grid, _app(diverged), strategy=strategy)
    (failure,) = result.rounds[-1].train.failures
    assert failure.node_id == 1
    assert "SecAggError" in failure.reason and "NaN or infinite" in failure.reason
    assert np.allclose(result.arrays["w"].numpy(), np.mean([0.2, 0.3, 0.4, 0.5]), atol=1e-4)


def _wrapping(message, context, call_next):
    """Node 1 adds 2**31 to its first coordinate, as a hostile input out of range would."""
    reply = secaggplus_mod(message, context, call_next)
    config = message.content.get("config")
    if context.node_id == 1 and config.get("secagg.stage") == "masking" and not reply.has_error:
        vector = reply.content["secagg"]["masked"].numpy().copy()
        vector[:1] += np.uint32(2**31)  # wraps mod 2**32
        reply.content["secagg"] = ArrayRecord({"masked": vector})
    return reply


def test_an_unmasked_sum_out_of_range_fails_the_round_clearly(make_grid):
    strategy = _strategy(5, modulus_range=2**32, quantization_range=2**16)
    with pytest.raises(RoundError, match=r"out of range .* a node sent a value outside"):
        _start(make_grid, _app(mods=[_wrapping]), strategy=strategy)


# -- H3: a bad share at unmasking -------------------------------------------------------------


def test_robust_combine_rebuilds_past_wrong_shares_and_names_their_holders():
    secret = os.urandom(32)
    shares = _shamir.split(secret, 5, list(range(1, 10)))
    shares[3], shares[7] = os.urandom(66), (int.from_bytes(shares[7], "big") + 1).to_bytes(66)
    assert _shamir.combine(shares, 5, 32) == (secret, [3, 7])
    assert _shamir.combine(_shamir.split(secret, 5, [1, 2, 3, 4, 5]), 5, 32) == (secret, [])
    shares[5] = os.urandom(66)  # 3 wrong of 9 with threshold 5: no unique answer
    with pytest.raises(ValueError, match="wrong"):
        _shamir.combine(shares, 5, 32)


def _bad_share(share):
    def tamper(message, context, call_next):
        reply = secaggplus_mod(message, context, call_next)
        config = message.content.get("config")
        if context.node_id == 1 and config.get("secagg.stage") == "unmasking":
            record = reply.content["secagg"]
            record["secagg.seed-shares"] = [share, *record["secagg.seed-shares"][1:]]
        return reply

    return tamper


@pytest.mark.parametrize(
    "share", [bytes(1) + os.urandom(65), b"", bytes(70)], ids=["random", "empty", "long"]
)
def test_one_bad_share_at_unmasking_is_outvoted_by_the_spare_ones(make_grid, share, caplog):
    strategy = _strategy(7, shares=7, threshold=4)
    result = _start(make_grid, _app(mods=[_bad_share(share)]), 7, strategy)
    assert np.allclose(result.arrays["w"].numpy(), 0.4, atol=1e-4)
    assert result.rounds[-1].train.num_ok == 7
    assert "node 1" in caplog.text and "wrong share" in caplog.text


# -- H4: an invalid public key ----------------------------------------------------------------


@pytest.mark.parametrize("field", ["secagg.pk-c", "secagg.pk-s"])
def test_a_node_advertising_a_low_order_key_is_set_aside_before_keys_are_shared(make_grid, field):
    def hostile(message, context, call_next):
        reply = secaggplus_mod(message, context, call_next)
        config = message.content.get("config")
        if context.node_id == 1 and config.get("secagg.stage") == "setup":
            reply.content["secagg"][field] = bytes(32)  # the all-zero point: low order
        return reply

    strategy = _strategy(9)
    strategy.min_train_nodes = 5
    result = _start(make_grid, _app(mods=[hostile]), 9, strategy)
    train = result.rounds[-1].train
    assert train.num_ok == 8
    (failure,) = train.failures
    assert failure.node_id == 1 and "not a valid X25519 key" in failure.reason
    assert np.allclose(result.arrays["w"].numpy(), np.mean(np.arange(2, 10) * 0.1), atol=1e-4)


# -- M1: the server's settings, checked by the node -------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("secagg.modulus-bits", 0, "modulus bits 0 must be from 1 to 64"),
        ("secagg.modulus-bits", -3, "modulus bits -3 must be from 1 to 64"),
        ("secagg.modulus-bits", 200, "modulus bits 200 must be from 1 to 64"),
        ("secagg.modulus-bits", 10**8, "must be from 1 to 64"),
        ("secagg.quantization-range", 1, "quantization range 1 must be from 2 to"),
        ("secagg.quantization-range", -5, "quantization range -5 must be from 2 to"),
        ("secagg.quantization-range", 2**32, "must be from 2 to 4294967295"),
        ("secagg.clipping-range", 0.0, "clipping range 0.0 must be a finite positive"),
        ("secagg.clipping-range", -1.0, "clipping range -1.0 must be a finite positive"),
        ("secagg.clipping-range", float("nan"), "clipping range nan must be a finite positive"),
        ("secagg.clipping-range", float("inf"), "clipping range inf must be a finite positive"),
        ("secagg.max-weight", -7, "max weight -7 must be at least 1"),
        ("secagg.max-weight", 2**20, "cannot fit the modulus"),
    ],
)
def test_a_node_refuses_hostile_settings_at_setup(key, value, reason):
    hand = Hand(complete(5), settings={key: value})
    reply = hand.send(
        1, {"secagg.stage": "setup", **hand.settings, "secagg.neighbours": [2, 3, 4, 5]}
    )
    assert "SecAggError" in refusal(reply) and reason in refusal(reply)


def test_a_node_refuses_more_neighbours_than_it_will_share_with():
    hood = list(range(2, 1003))
    settings = {"secagg.threshold": 600}
    reply = Hand({1: hood}, settings=settings).send(
        1, {"secagg.stage": "setup", **SETTINGS, **settings, "secagg.neighbours": hood}
    )
    assert "1001 neighbours, more than the 1000" in refusal(reply)


# -- M2: the node operator's floors -----------------------------------------------------------


def _setup_reply(mod, neighbours, threshold):
    graph = {1: neighbours}
    hand = Hand(graph, mod=mod, settings={"secagg.threshold": threshold})
    return hand.send(1, {"secagg.stage": "setup", **hand.settings, "secagg.neighbours": neighbours})


def test_secaggplus_mod_as_is_refuses_a_tiny_neighbourhood_or_threshold():
    reason = refusal(_setup_reply(secaggplus_mod, [2, 3], 2))
    assert "2 neighbours, fewer than this node's floor of 4" in reason
    reason = refusal(_setup_reply(secaggplus_mod, [2, 3, 4, 5, 6, 7], 2))
    assert "threshold 2" in reason  # not a majority: refused as before
    assert not _setup_reply(secaggplus_mod, [2, 3, 4, 5], 3).has_error


def test_an_operator_sets_its_own_floors():
    strict = SecAggPlusMod(min_neighbours=6, min_threshold=5)
    assert "4 neighbours, fewer than this node's floor of 6" in refusal(
        _setup_reply(strict, [2, 3, 4, 5], 3)
    )
    assert "threshold 4 is below this node's floor of 5" in refusal(
        _setup_reply(strict, [2, 3, 4, 5, 6, 7], 4)
    )
    assert not _setup_reply(strict, [2, 3, 4, 5, 6, 7], 5).has_error
    lenient = SecAggPlusMod(min_neighbours=2, min_threshold=2)
    assert not _setup_reply(lenient, [2, 3], 2).has_error
    with pytest.raises(ConfigError, match="min_neighbours must be an int of at least 2"):
        SecAggPlusMod(min_neighbours=1)
    with pytest.raises(ConfigError, match="min_threshold must be an int of at least 2"):
        SecAggPlusMod(min_threshold=0)


def test_a_round_every_node_refuses_says_why_not_only_how_many_dropped(make_grid):
    # SecAgg+(3, 2) gives each node 2 neighbours: below secaggplus_mod's floor of 4.
    with pytest.raises(RoundError) as raised:
        _start(make_grid, _app(), strategy=_strategy(5, shares=3, threshold=2))
    message = str(raised.value)
    assert "only 0 masked vectors arrived" in message
    assert "nodes 1, 2, 3, 4, 5: dropped at SecAgg+ stage setup" in message
    assert message.count("floor of 4") == 1  # the same reason once, with its nodes


# -- M3: "lacks the mod" from a structured signal ---------------------------------------------


def test_a_refusal_by_the_mod_carries_its_own_error_code_and_counts_as_a_dropout(make_grid):
    strict = SecAggPlusMod(min_neighbours=6)

    def mixed(message, context, call_next):
        mod = strict if context.node_id == 2 else secaggplus_mod
        return mod(message, context, call_next)

    strategy = _strategy(5)
    strategy.min_train_nodes = 1
    result = _start(make_grid, _app(mods=[mixed]), strategy=strategy)
    (failure,) = result.rounds[-1].train.failures
    assert failure.node_id == 2 and "PROTOCOL_REFUSED: SecAggError" in failure.reason
    assert "floor of 6" in failure.reason


def test_a_node_without_the_mod_is_named_whatever_its_handler_says(make_grid):
    def confusing(msg, context):
        raise RuntimeError("not a SecAggError: this app has no secaggplus_mod")

    app = _app(confusing, mods=[])
    with pytest.raises(RoundError, match=r"node\(s\) 1, 2, 3, 4, 5 answered without secagg"):
        _start(make_grid, app)


def test_any_other_setup_error_is_that_node_dropping(make_grid):
    def odd(message, context, call_next):
        config = message.content.get("config")
        if context.node_id == 3 and config.get("secagg.stage") == "setup":
            return message.reply_error(ErrorCode.INVALID_REPLY, "garbled on the way")
        return secaggplus_mod(message, context, call_next)

    strategy = _strategy(5)
    strategy.min_train_nodes = 1
    result = _start(make_grid, _app(mods=[odd]), strategy=strategy)
    (failure,) = result.rounds[-1].train.failures
    assert failure.node_id == 3 and "dropped at SecAgg+ stage setup" in failure.reason


# -- M4: no secret outlives its round ---------------------------------------------------------

SECRETS = {"sk-c", "sk-s", "seed", "seed-shares", "key-shares", "holders"}


def _secrets_held(context):
    record = context.state.get("secagg.node")
    return set(record) & SECRETS if record is not None else set()


def test_the_app_never_sees_the_round_secrets_while_it_trains():
    seen = []

    def peeking(msg, context):
        seen.append(_secrets_held(context))
        return _train(msg, context)

    Hand(complete(5), train=peeking).until_masking()
    assert seen == [set()] * 5


def test_a_refused_stage_forgets_the_round_secrets():
    hand = Hand(complete(5))
    hand.until_masking()
    assert _secrets_held(hand.contexts[1])  # held for unmasking
    refusal(hand.unmask(1, [1], [2, 3, 4, 5]))  # a lie: refused, and the round is over
    assert not _secrets_held(hand.contexts[1])
    assert "after stage 'aborted'" in refusal(hand.unmask(1, [1, 2, 3], [4, 5]))


def test_a_plain_message_after_an_aborted_round_finds_no_secrets():
    seen = []

    def evaluate(msg, context):
        seen.append(_secrets_held(context))
        return msg.reply(RecordDict({"metrics": MetricRecord({"loss": 0.0})}))

    hand = Hand(complete(5))
    hand.app.evaluate()(evaluate)
    hand.until_masking()  # the server's round fails here: no unmasking message comes
    message = Message.create(RecordDict({"arrays": MODEL}), 1, "evaluate", run_id=1)
    assert not hand.app(message, hand.contexts[1]).has_error
    assert seen == [set()] and not _secrets_held(hand.contexts[1])


def test_a_refused_setup_forgets_an_earlier_round_secrets():
    hand = Hand(complete(5))
    hand.until_masking()
    hand.session = os.urandom(16)
    reply = hand.send(1, {"secagg.stage": "setup", **hand.settings, "secagg.neighbours": [2]})
    refusal(reply)
    assert not _secrets_held(hand.contexts[1])


def test_a_round_that_failed_at_masking_still_refuses_a_replayed_setup():
    def failing(msg, context):
        raise RuntimeError("out of memory")

    hand = Hand(complete(5), train=failing)
    setup = {"secagg.stage": "setup", **hand.settings, "secagg.neighbours": [2, 3, 4, 5]}
    hand.setup()
    boxes = hand.share_keys()
    masking = {
        "secagg.stage": "masking",
        "secagg.sources": [s for s, _ in boxes[1]],
        "secagg.ciphertexts": [b for _, b in boxes[1]],
    }
    assert hand.send(1, masking, MODEL).has_error
    assert not _secrets_held(hand.contexts[1])
    assert "used before (a replayed message)" in refusal(hand.send(1, setup))


# -- L1, L2: every node dropping at unmasking; a weight that is not a number ------------------


def _dropping_at_unmasking(message, context, call_next):
    config = message.content.get("config")
    if config is not None and config.get("secagg.stage") == "unmasking":
        return message.reply_error(ErrorCode.NODE_UNAVAILABLE, "dropped at unmasking")
    return secaggplus_mod(message, context, call_next)


def test_every_node_dropping_at_unmasking_names_the_fix(make_grid):
    strategy = _strategy(5)
    with pytest.raises(RoundError, match="too many nodes dropped") as caught:
        _start(make_grid, _app(mods=[_dropping_at_unmasking]), strategy=strategy)
    assert "raise num_shares or lower reconstruction_threshold" in str(caught.value)


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), -float("inf")])
def test_a_weight_that_is_not_a_finite_number_is_refused_clearly(weight):
    def weighing(msg, context):
        reply = _train(msg, context)
        reply.content["metrics"] = MetricRecord({"num-examples": weight})
        return reply

    hand = Hand(complete(5), train=weighing, settings={"secagg.weighted": True})
    hand.setup()
    boxes = hand.share_keys()
    masking = {
        "secagg.stage": "masking",
        "secagg.sources": [s for s, _ in boxes[1]],
        "secagg.ciphertexts": [b for _, b in boxes[1]],
    }
    reason = refusal(hand.send(1, masking, MODEL))
    assert "SecAggError" in reason and f"weight num-examples={weight}" in reason


# -- L3: rounds of fewer than 3 nodes ---------------------------------------------------------


@pytest.mark.parametrize("shares", [0.5, 1.0])
def test_rounds_of_fewer_than_three_nodes_are_refused_when_the_strategy_is_built(shares):
    with pytest.raises(ConfigError, match=r"at least 3 nodes.*min_train_nodes=2"):
        FedAvg(secure_aggregation=SecAggPlus(shares, 0.75), min_train_nodes=2)
    FedAvg(secure_aggregation=SecAggPlus(shares, 0.75), min_train_nodes=3)


def _bad_key_share(message, context, call_next):
    config = message.content.get("config")
    if config is not None and config.get("secagg.stage") == "masking" and context.node_id == 5:
        return message.reply_error(ErrorCode.NODE_UNAVAILABLE, "dropped at masking")
    reply = secaggplus_mod(message, context, call_next)
    if context.node_id == 1 and config.get("secagg.stage") == "unmasking":
        record = reply.content["secagg"]
        record["secagg.key-shares"] = [bytes(1) + os.urandom(65)]
    return reply


def test_one_spare_key_share_is_enough_to_outvote_a_wrong_one(make_grid, caplog):
    """Node 5 drops after sharing: 4 holders of its mask key, threshold 3, node 1 lies.

    One spare share cannot outvote a wrong one by decoding, but the key must match the
    public key node 5 advertised, which picks the right 3 of the 4.
    """
    strategy = _strategy(5)
    strategy.min_train_nodes = 1
    result = _start(make_grid, _app(mods=[_bad_key_share]), strategy=strategy)
    assert result.rounds[-1].train.num_ok == 4
    assert np.allclose(result.arrays["w"].numpy(), 0.25, atol=1e-4)
    assert "node 1 sent a wrong share of node 5's secret" in caplog.text


# -- too few nodes: one message with the number needed -------------------------------------


def test_the_default_min_train_nodes_is_told_the_number_secagg_needs_at_once():
    with pytest.raises(ConfigError) as caught:
        FedAvg(secure_aggregation=SecAggPlus(17, 9))
    assert "raise min_train_nodes to 17" in str(caught.value)
    FedAvg(secure_aggregation=SecAggPlus(17, 9), min_train_nodes=17)


def test_a_simulation_with_too_few_nodes_says_so_once_and_not_to_lower_what_secagg_needs():
    strategy = FedAvg(
        secure_aggregation=SecAggPlus(17, 9), min_train_nodes=17, fraction_evaluate=0.0
    )
    with pytest.raises(RoundError) as caught:
        run_simulation(
            client_app=ClientApp(mods=[secaggplus_mod]),
            strategy=strategy,
            num_rounds=1,
            num_nodes=10,
            initial_arrays=ArrayRecord({"w": np.zeros(3)}),
            verbose=False,
        )
    message = str(caught.value)
    assert message.count("17") == 2, message  # min_train_nodes=17, and SecAgg+'s 17
    assert "simulation has only 10 nodes" in message and "num-nodes" in message
    assert "lower min_train_nodes" not in message
