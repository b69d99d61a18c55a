"""The link and its nodes on 127.0.0.1: rounds, chunking, lost and stalled nodes, bad input."""

import contextlib
import logging
import os
import signal
import threading
import time

import grpc
import numpy as np
import pytest

from pollinate import ArrayRecord, ClientApp, FedAvg, Message, RecordDict
from pollinate.deploy import Backoff, Link, run_node
from pollinate.deploy._frames import Frame, chunk_frames, decode_frame, encode_frame
from pollinate.deploy._link import CHANNEL_METHOD, REGISTER_METHOD
from pollinate.errors import ConfigError, RoundError
from pollinate.message import ErrorCode
from pollinate.wire import encode_parts

MODEL = ArrayRecord({"w": np.zeros((64, 100)), "b": np.zeros(100)})  # ~52 KB: 13 chunks


def _fedavg(**options):
    return FedAvg(fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1, **options)


def test_fedavg_rounds_run_over_grpc_in_chunks(link, start_nodes):
    start_nodes(3)
    grid = link.grid(run_id=7, run_config={"tag": 2.5})
    grid.wait_for_nodes(3, timeout_s=10)
    result = _fedavg().start(grid, MODEL, num_rounds=3)
    # Partition p adds p + 1 each round: FedAvg (equal weights) adds 2 per round.
    np.testing.assert_array_equal(result.arrays["w"].numpy(), np.full((64, 100), 6.0))
    train = result.metrics("train")
    assert train[3]["tag"] == 2.5  # the run config reached the nodes
    assert train[3]["rounds-seen"] == 3  # each node kept its state across rounds
    assert all(r.train.num_failed == 0 for r in result.rounds)


def test_a_killed_node_becomes_a_failure_and_the_round_completes(link, start_nodes, node_process):
    start_nodes(2)
    victim = node_process(2)
    grid = link.grid(run_id=1, run_config={"slow-partitions": "2", "sleep-s": 30.0})
    grid.wait_for_nodes(3, timeout_s=20)
    began = time.monotonic()
    replies = []
    messages = [
        Message.create(RecordDict({"arrays": MODEL}), node, "train") for node in grid.node_ids()
    ]
    for reply in grid.receive(grid.send(messages), timeout_s=60):
        replies.append(reply)
        if len(replies) == 2:
            victim.kill()  # mid-round: it is sleeping in its train handler
    assert time.monotonic() - began < 20
    failed = [r for r in replies if r.error is not None]
    assert len(replies) == 3 and len(failed) == 1
    assert failed[0].error.code == ErrorCode.NODE_UNAVAILABLE


def test_a_paused_node_is_lost_when_its_heartbeats_stop(link, start_nodes, node_process):
    start_nodes(1)
    paused = node_process(1)
    grid = link.grid(run_id=1, run_config={"slow-partitions": "1", "sleep-s": 1.0})
    grid.wait_for_nodes(2, timeout_s=20)
    messages = [
        Message.create(RecordDict({"arrays": MODEL}), node, "train") for node in grid.node_ids()
    ]
    ids = grid.send(messages)
    os.kill(paused.pid, signal.SIGSTOP)
    try:
        replies = list(grid.receive(ids, timeout_s=30))
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    codes = sorted(r.error.code if r.error else 0 for r in replies)
    assert codes == [0, ErrorCode.NODE_UNAVAILABLE]
    assert len(grid.node_ids()) in (1, 2)  # the paused node may reconnect once resumed


def test_a_slow_reply_times_out_and_is_dropped_when_it_comes(link, start_nodes, caplog):
    start_nodes(2)
    grid = link.grid(run_id=1, run_config={"slow-partitions": "1", "sleep-s": 1.0})
    grid.wait_for_nodes(2, timeout_s=10)
    messages = [
        Message.create(RecordDict({"arrays": MODEL}), node, "train") for node in grid.node_ids()
    ]
    with caplog.at_level(logging.WARNING, logger="pollinate.link"):
        replies = list(grid.receive(grid.send(messages), timeout_s=0.5))
        time.sleep(1.5)  # the slow node answers now, too late
    assert sorted(r.error.code if r.error else 0 for r in replies) == [0, ErrorCode.TIMEOUT]
    assert "no message waits for it" in caplog.text


def test_with_too_few_nodes_left_the_round_fails_with_reasons(link, start_nodes):
    start_nodes(1)
    grid = link.grid(run_id=1, run_config={})
    grid.wait_for_nodes(1, timeout_s=10)
    with pytest.raises(RoundError, match=r"min_available_nodes=2 connected nodes, but only 1 of"):
        FedAvg(min_available_nodes=2, wait_for_nodes_s=0.5).start(grid, MODEL, num_rounds=1)


def _raw_node(link, config=None):
    """A hand-driven node connection: register, then open the stream with ``hello``."""
    channel = grpc.insecure_channel(f"127.0.0.1:{link.port}")
    answer = decode_frame(
        channel.unary_unary(REGISTER_METHOD)(
            encode_frame(Frame("register", {"node_config": config or {}}))
        )
    )
    return channel, answer.header


def test_replies_from_a_node_that_was_not_asked_are_dropped(link, start_nodes, caplog):
    start_nodes(1)
    channel, me = _raw_node(link)
    grid = link.grid(run_id=1, run_config={"slow-partitions": "0", "sleep-s": 0.5})
    grid.wait_for_nodes(1, timeout_s=10)
    honest = next(n for n in grid.node_ids() if n != me["node_id"])
    (message_id,) = grid.send([Message.create(RecordDict({"arrays": MODEL}), honest, "train")])
    sent = Message.create(RecordDict({"arrays": MODEL}), honest, "train")
    forged = sent.reply(RecordDict({"arrays": MODEL})).with_metadata(reply_to_message_id=message_id)
    frames = [Frame("hello", {"node_id": me["node_id"], "token": me["token"]})]
    frames += list(chunk_frames("x", encode_parts(forged), 4096, {"reply_to": message_id}))
    with caplog.at_level(logging.WARNING, logger="pollinate.link"):
        stream = channel.stream_stream(CHANNEL_METHOD)(iter(map(encode_frame, frames)))
        (reply,) = grid.receive([message_id], timeout_s=10)
        stream.cancel()
    assert reply.error is None and reply.metadata.src_node_id == honest  # the honest answer
    assert f"reply from node {me['node_id']} to a message sent to node {honest}" in caplog.text
    channel.close()


def test_a_message_the_grid_no_longer_waits_for_is_not_sent_to_its_node(link):
    # FedBuff abandons a task at its deadline, but the message may still sit in the node's
    # outbox: the stream drops it there, and sends only what the grid still waits for.
    channel, me = _raw_node(link)
    done = threading.Event()

    def frames():
        yield encode_frame(Frame("hello", {"node_id": me["node_id"], "token": me["token"]}))
        done.wait(10)

    stream = channel.stream_stream(CHANNEL_METHOD)(frames())
    try:
        grid = link.grid(run_id=1, run_config={})
        grid.wait_for_nodes(1, timeout_s=10)
        node = me["node_id"]
        # What an outbox holds for a message abandoned after it was queued: the grid does
        # not wait for it (grid.send would push it at once, before it could be abandoned).
        abandoned = Message.create(RecordDict({"arrays": MODEL}), node, "train")
        gone = abandoned.metadata.message_id
        assert not grid.waits_for(gone)
        link.push(node, gone, encode_parts(abandoned), {})
        (waited,) = grid.send([Message.create(RecordDict({"arrays": MODEL}), node, "train")])
        ids = {decode_frame(raw).header.get("message_id") for raw in _frames_until(stream, waited)}
        assert gone not in ids
    finally:
        done.set()
        stream.cancel()
        channel.close()


def _frames_until(stream, message_id):
    """The stream's frames up to the first of ``message_id``'s."""
    for raw in stream:
        yield raw
        if decode_frame(raw).header.get("message_id") == message_id:
            return


def test_bad_registrations_and_streams_are_refused_and_the_link_keeps_serving(
    link, start_nodes, caplog
):
    channel = grpc.insecure_channel(f"127.0.0.1:{link.port}")
    register = channel.unary_unary(REGISTER_METHOD)
    with pytest.raises(grpc.RpcError) as bad_config:
        register(encode_frame(Frame("register", {"node_config": {"x": [1, 2]}})))
    assert bad_config.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as garbage:
        register(b"not a frame at all")
    assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    wrong_token = [encode_frame(Frame("hello", {"node_id": 1, "token": "guess"}))]
    with pytest.raises(grpc.RpcError) as unknown:
        list(channel.stream_stream(CHANNEL_METHOD)(iter(wrong_token)))
    assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
    _, me = _raw_node(link)
    hostile = [
        encode_frame(Frame("hello", {"node_id": me["node_id"], "token": me["token"]})),
        encode_frame(Frame("chunk", {"message_id": "m", "offset": 0, "total": 1 << 40})),
    ]
    with (
        caplog.at_level(logging.WARNING, logger="pollinate.link"),
        pytest.raises(grpc.RpcError) as too_big,
    ):
        list(channel.stream_stream(CHANNEL_METHOD)(iter(hostile)))
    assert too_big.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "exceeds the limit" in too_big.value.details() and "exceeds the limit" in caplog.text
    channel.close()
    start_nodes(2)  # the link still serves honest nodes
    grid = link.grid(run_id=2, run_config={})
    grid.wait_for_nodes(2, timeout_s=10)
    assert _fedavg().start(grid, MODEL, num_rounds=1).rounds[-1].train.num_failed == 0


def test_a_second_link_on_a_busy_port_fails_clearly(link):
    with pytest.raises(ConfigError, match="cannot listen"):
        Link(f"127.0.0.1:{link.port}", credentials=None).start()


def test_a_run_config_too_large_to_travel_is_refused(link):
    with pytest.raises(ConfigError, match="travels with every message"):
        link.grid(run_id=1, run_config={"blob": "x" * 40_000})


def test_a_stream_that_never_says_hello_is_dropped(caplog):
    link = Link("127.0.0.1:0", credentials=None, hello_timeout_s=0.3)
    link.start()
    silent = threading.Event()

    def nothing():
        silent.wait(5)
        yield from ()

    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{link.port}")
        with caplog.at_level(logging.WARNING, logger="pollinate.link"):
            with pytest.raises(grpc.RpcError):
                list(channel.stream_stream(CHANNEL_METHOD)(nothing(), timeout=5))
            for _ in range(50):  # the link logs once its handler wakes up
                if "no hello within 0.3 s" in caplog.text:
                    break
                time.sleep(0.05)
        assert "no hello within 0.3 s" in caplog.text
        channel.close()
    finally:
        silent.set()
        link.stop(grace_s=0.5)


class _FakeLink:
    def push(self, node_id, message_id, parts, header):
        return True


def _limits(max_open):
    from pollinate.deploy._grid import ReplyLimits

    return ReplyLimits(max_open, node_bytes=1 << 20, total_bytes=1 << 20)


def test_replies_come_in_the_order_their_messages_were_sent_a_few_at_a_time():
    from pollinate.deploy._grid import LinkGrid
    from pollinate.message import MessageType

    grid = LinkGrid(_FakeLink(), 1, {})
    messages = [Message.create(RecordDict(), node, MessageType.TRAIN) for node in (1, 2, 3)]
    ids = grid.send(messages)
    sent = {m.metadata.message_id: m for m in grid._waiting.values()}
    admitted = []

    def reply(message_id):
        node = sent[message_id].metadata.dst_node_id
        assert grid.let_in(node, message_id, 0, _limits(2), keep_alive=lambda: None, period_s=0.05)
        admitted.append(message_id)
        grid.take_reply(node, message_id, sent[message_id].reply(RecordDict()))

    late = threading.Thread(target=reply, args=(ids[2],))
    late.start()
    reply(ids[1])  # among the first two: no wait
    reply(ids[0])
    time.sleep(0.2)
    assert admitted == ids[1::-1]  # the third waits: two replies are not taken up yet
    replies = grid.receive(ids)
    assert next(replies).metadata.reply_to_message_id in ids[:2]
    time.sleep(0.2)
    assert len(admitted) == 2  # the ServerApp may still be folding the first reply
    next(replies)  # asking for the next one means the first is done with
    late.join(timeout=5)
    assert admitted == [ids[1], ids[0], ids[2]]
    assert next(replies).metadata.reply_to_message_id == ids[2]
    assert not grid.let_in(1, "x", 0, _limits(1), print, 0.05)  # nobody waits: refused


def test_a_reply_waiting_for_its_turn_is_not_timed_out_behind_a_silent_node():
    from pollinate.deploy._grid import LinkGrid
    from pollinate.message import MessageType

    grid = LinkGrid(_FakeLink(), 1, {})
    silent, answering = grid.send(
        [Message.create(RecordDict(), node, MessageType.TRAIN) for node in (1, 2)]
    )
    sent = {m.metadata.message_id: m for m in grid._waiting.values()}

    def reply_in_turn():  # node 2 answered at once, but node 1's message went first
        grid.let_in(2, answering, 0, _limits(1), keep_alive=lambda: None, period_s=0.05)
        grid.take_reply(2, answering, sent[answering].reply(RecordDict()))

    thread = threading.Thread(target=reply_in_turn)
    thread.start()
    replies = list(grid.receive([silent, answering], timeout_s=0.5))
    thread.join(timeout=5)
    by_id = {r.metadata.reply_to_message_id: r for r in replies}
    assert by_id[silent].error.code == ErrorCode.TIMEOUT
    assert by_id[answering].error is None  # it came in time: only its turn was late


@pytest.mark.parametrize(
    ("bad", "code", "reason"),
    [
        ("huge-int", ErrorCode.CLIENT_APP_RAISED, "MetricRecord['big'] = 1180591620717411303424"),
        ("no-utf8", ErrorCode.INVALID_REPLY, "the reply cannot be sent"),
    ],
)
def test_a_reply_the_rules_refuse_fails_its_node_which_stays_connected(
    link, start_nodes, bad, code, reason
):
    start_nodes(2)
    grid = link.grid(run_id=1, run_config={"bad-reply": bad, "bad-partitions": "1"})
    grid.wait_for_nodes(2, timeout_s=10)
    for _ in range(2):  # the node still serves the next round on the same stream
        messages = [
            Message.create(RecordDict({"arrays": MODEL}), node, "train") for node in grid.node_ids()
        ]
        replies = list(grid.receive(grid.send(messages), timeout_s=30))
        failed = [r for r in replies if r.error is not None]
        assert len(replies) == 2 and len(failed) == 1
        assert failed[0].error.code == code and reason in failed[0].error.reason
    assert len(grid.node_ids()) == 2


def _raw(header: bytes) -> bytes:
    """A frame whose JSON header is ``header``, byte for byte."""
    return b"PLF\x01" + len(header).to_bytes(4, "little") + header


HOSTILE = [
    (b'{"kind":"register","node_config":{},"node_id":' + b"9" * 5000 + b"}", "5000 digits"),
    (b'{"kind":"register","node_config":{},"node_id":[1]}', "'node_id' must be an int"),
    (b'{"kind":"register","node_config":{"x":1e999}}', "1e999 is not a finite number"),
    (b'{"kind":"register","node_config":{},"node_id":true,"token":"t"}', "got true"),
]


@pytest.mark.parametrize(("header", "reason"), HOSTILE)
def test_a_hostile_registration_gets_invalid_argument_saying_what_is_wrong(link, header, reason):
    with (
        grpc.insecure_channel(f"127.0.0.1:{link.port}") as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        channel.unary_unary(REGISTER_METHOD)(_raw(header), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in refused.value.details()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b'{"kind":"hello","node_id":[1],"token":"t"}', "'node_id' must be an int, got [1]"),
        (b'{"kind":"hello","node_id":1,"token":"t","x":1e999}', "1e999 is not a finite number"),
        (b'{"kind":"chunk","message_id":"m","offset":false}', "'offset' must be an int >= 0"),
        (b'{"kind":"chunk","message_id":"m","offset":0,"total":true}', "'total' must be an int"),
        (b'{"kind":"chunk","message_id":"m","offset":0,"total":' + b"1" * 5000 + b"}", "digits"),
    ],
)
def test_a_hostile_frame_on_a_stream_gets_invalid_argument_saying_what_is_wrong(
    link, start_nodes, caplog, frame, reason
):
    channel, me = _raw_node(link)
    hello = encode_frame(Frame("hello", {"node_id": me["node_id"], "token": me["token"]}))
    frames = [_raw(frame)] if b'"hello"' in frame else [hello, _raw(frame)]
    with (
        caplog.at_level(logging.WARNING, logger="pollinate.link"),
        pytest.raises(grpc.RpcError) as refused,
    ):
        list(channel.stream_stream(CHANNEL_METHOD)(iter(frames), timeout=10))
    channel.close()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in refused.value.details()
    assert "Traceback" not in caplog.text
    start_nodes(1)  # the link still serves honest nodes
    grid = link.grid(run_id=2, run_config={})
    grid.wait_for_nodes(1, timeout_s=10)


def test_a_token_of_any_text_is_compared_not_crashed_on(link):
    _, me = _raw_node(link)
    channel = grpc.insecure_channel(f"127.0.0.1:{link.port}")
    hello = [encode_frame(Frame("hello", {"node_id": me["node_id"], "token": "é"}))]
    with pytest.raises(grpc.RpcError) as refused:
        list(channel.stream_stream(CHANNEL_METHOD)(iter(hello)))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # not UNKNOWN
    again = {"node_config": {}, "node_id": me["node_id"], "token": "é"}
    answer = channel.unary_unary(REGISTER_METHOD)(encode_frame(Frame("register", again)))
    assert decode_frame(answer).header["node_id"] != me["node_id"]  # a new node, not that one
    channel.close()


def _hostile_link(register_header, channel_frame):
    """A fake link on a free port: Register answers ``register_header``; Channel sends one
    frame, welcome first, then waits for the node to go."""
    from concurrent import futures

    def register(request, context):
        return encode_frame(Frame("register", register_header))

    def channel(requests, context):
        context.send_initial_metadata((("pollinate-welcome", "1"),))
        yield encode_frame(channel_frame)
        for _ in requests:
            pass

    handler = grpc.method_handlers_generic_handler(
        "pollinate.v1.Fleet",
        {
            "Register": grpc.unary_unary_rpc_method_handler(register),
            "Channel": grpc.stream_stream_rpc_method_handler(channel),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.mark.timeout(60)
def test_a_link_whose_answer_lacks_a_node_id_is_named_not_blamed_on_the_app():
    server, port = _hostile_link({"token": "t", "heartbeat_s": 1.0}, Frame("bye"))
    try:
        with pytest.raises(ConfigError, match="keeps sending malformed data"):
            run_node(
                f"127.0.0.1:{port}",
                ClientApp(),
                backoff=Backoff(initial_s=0.05, max_s=0.2, give_up_s=1.0),
            )
    finally:
        server.stop(0)


@pytest.mark.timeout(60)
def test_a_node_backs_off_from_a_link_that_ends_every_stream_at_once(caplog):
    server, port = _hostile_link({"node_id": 5, "token": "t", "heartbeat_s": 1.0}, Frame("bye"))
    ended = []

    def node():
        with contextlib.suppress(ConfigError):
            run_node(
                f"127.0.0.1:{port}",
                ClientApp(),
                backoff=Backoff(initial_s=0.05, max_s=0.4, give_up_s=1.0),
                until_bye=False,  # a daemon node: it comes back after a bye
            )
        ended.append(True)

    with caplog.at_level(logging.INFO, logger="pollinate"):
        thread = threading.Thread(target=node, daemon=True)
        thread.start()
        time.sleep(3)
        server.stop(0)  # then the node finds no link, and gives up
        thread.join(30)
    # The fake link names every node 5 (other tests' nodes may still log their own ids).
    connects = [r for r in caplog.records if r.getMessage() == "registered as node 5"]
    assert ended and 1 <= len(connects) < 20  # waits grew to 0.4 s: no tight loop
