"""Node identity on the link: signed registrations and frames, bound node ids, refusals."""

import logging
import threading

import grpc
import numpy as np
import pytest

from pollinate import ArrayRecord, FedAvg
from pollinate.deploy import Backoff, Link, run_node
from pollinate.deploy._frames import Frame, decode_frame, encode_frame
from pollinate.deploy._identity import NodeKey, Verifier, body_digest, sign
from pollinate.deploy._link import CHANNEL_METHOD, REGISTER_METHOD
from pollinate.deploy._sealed import seal
from pollinate.errors import AuthError

from .node_apps import app as node_app

MODEL = ArrayRecord({"w": np.zeros((32, 32))})


def _link(**verifier_options):
    link = Link(
        "127.0.0.1:0",
        credentials=None,
        chunk_size=2048,
        heartbeat_s=0.2,
        verifier=Verifier(**verifier_options),
    )
    link.start()
    return link


def _node(link, key, partition=0, give_up_s=5.0):
    thread = threading.Thread(
        target=run_node,
        args=(f"127.0.0.1:{link.port}", node_app),
        kwargs={
            "node_config": {"partition-id": partition},
            "key": key,
            "chunk_size": 2048,
            "backoff": Backoff(initial_s=0.05, max_s=0.2, give_up_s=give_up_s),
        },
        daemon=True,
    )
    thread.start()
    return thread


def _register(link, key, header=None):
    channel = grpc.insecure_channel(f"127.0.0.1:{link.port}")
    request = encode_frame(Frame("register", header or {"node_config": {}}))
    metadata = sign(key, REGISTER_METHOD, body_digest(request)).to_metadata()
    answer = channel.unary_unary(REGISTER_METHOD)(request, metadata=metadata)
    return channel, decode_frame(answer).header


def test_signed_nodes_run_rounds_on_a_link_that_requires_signatures():
    link = _link()
    try:
        nodes = [_node(link, NodeKey.generate(), p) for p in range(2)]
        grid = link.grid(1, {})
        grid.wait_for_nodes(2, timeout_s=10)
        result = FedAvg(fraction_evaluate=0.0).start(grid, MODEL, num_rounds=2)
        np.testing.assert_array_equal(result.arrays["w"].numpy(), np.full((32, 32), 3.0))
    finally:
        link.stop(grace_s=0.5)
    for node in nodes:
        node.join(10)


def test_a_node_without_a_key_is_refused_with_a_clear_message():
    link = _link()
    try:
        with pytest.raises(AuthError, match="refused this node: request is not signed"):
            run_node(f"127.0.0.1:{link.port}", node_app, backoff=Backoff(give_up_s=2))
    finally:
        link.stop(grace_s=0.5)


def test_only_registered_keys_are_admitted():
    admitted, stranger = NodeKey.generate(), NodeKey.generate()
    link = _link(registered={admitted.public_key})
    try:
        with pytest.raises(AuthError, match="not registered"):
            run_node(f"127.0.0.1:{link.port}", node_app, key=stranger, backoff=Backoff(give_up_s=2))
        node = _node(link, admitted)
        link.grid(1, {}).wait_for_nodes(1, timeout_s=10)
    finally:
        link.stop(grace_s=0.5)
    node.join(10)


def test_a_node_cannot_take_over_another_nodes_id_even_with_its_token():
    link = _link()
    victim, thief = NodeKey.generate(), NodeKey.generate()
    try:
        channel, registered = _register(link, victim)
        # The thief knows the victim's id and token, but signs with its own key.
        stolen = {"node_config": {}, "node_id": registered["node_id"], "token": registered["token"]}
        _, answer = _register(link, thief, stolen)
        assert answer["node_id"] != registered["node_id"]  # it got an id of its own
        hello = encode_frame(Frame("hello", {k: registered[k] for k in ("node_id", "token")}))
        with pytest.raises(grpc.RpcError) as refused:
            list(channel.stream_stream(CHANNEL_METHOD)(iter([seal(thief, CHANNEL_METHOD, hello)])))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        channel.close()
    finally:
        link.stop(grace_s=0.5)


@pytest.mark.parametrize("attack", ["replayed", "altered", "other signer"])
def test_a_replayed_altered_or_foreign_frame_ends_the_nodes_stream(attack, caplog):
    link = _link()
    key = NodeKey.generate()
    try:
        channel, me = _register(link, key)
        hello = seal(
            key,
            CHANNEL_METHOD,
            encode_frame(Frame("hello", {k: me[k] for k in ("node_id", "token")})),
        )
        beat = seal(key, CHANNEL_METHOD, encode_frame(Frame("heartbeat")))
        if attack == "replayed":
            frames = [hello, beat, beat]
        elif attack == "altered":
            frames = [hello, beat[:-1] + bytes([beat[-1] ^ 1])]
        else:
            frames = [
                hello,
                seal(NodeKey.generate(), CHANNEL_METHOD, encode_frame(Frame("heartbeat"))),
            ]
        with (
            caplog.at_level(logging.WARNING, logger="pollinate.link"),
            pytest.raises(grpc.RpcError) as refused,
        ):
            list(channel.stream_stream(CHANNEL_METHOD)(iter(frames)))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reason = {"replayed": "replay", "altered": "signature", "other signer": "another signer"}
        assert f"dropping node {me['node_id']}'s stream" in caplog.text
        assert reason[attack] in caplog.text.lower()
        channel.close()
    finally:
        link.stop(grace_s=0.5)


def test_one_key_holds_one_node_id():
    link = _link()
    key = NodeKey.generate()
    try:
        _, first = _register(link, key)
        _, again = _register(link, key)  # no id or token: the key alone
        assert again["node_id"] == first["node_id"]
    finally:
        link.stop(grace_s=0.5)


def test_a_node_with_a_key_can_join_a_link_that_checks_no_signatures():
    link = Link("127.0.0.1:0", credentials=None, chunk_size=2048, heartbeat_s=0.2)
    link.start()
    try:
        node = _node(link, NodeKey.generate())
        grid = link.grid(1, {})
        grid.wait_for_nodes(1, timeout_s=10)
        result = FedAvg(fraction_evaluate=0.0, min_available_nodes=1, min_train_nodes=1).start(
            grid, MODEL, num_rounds=1
        )
        assert result.rounds[-1].train.num_failed == 0
    finally:
        link.stop(grace_s=0.5)
    node.join(10)
