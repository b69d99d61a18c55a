"""What a link holds for its nodes' replies: a few at a time, only when asked, within quotas."""

import logging
import queue
import threading

import grpc
import numpy as np
import pytest
from click.testing import CliRunner

from pollinate import ArrayRecord, ClientApp, Message, MetricRecord, RecordDict, deploy
from pollinate.cli._main import cli
from pollinate.deploy import Backoff, Link, _frames, run_node
from pollinate.deploy._frames import Frame, assemble_one, chunk_frames, decode_frame, encode_frame
from pollinate.deploy._grid import LinkGrid, ReplyLimits
from pollinate.deploy._link import CHANNEL_METHOD, REGISTER_METHOD
from pollinate.errors import ConfigError
from pollinate.message import ErrorCode, MessageType
from pollinate.wire import decode, encode_parts

MODEL = ArrayRecord({"w": np.zeros(4000)})  # 32 KB: 8 chunks of 4 KiB
released = threading.Event()
"""Set by the test: the slow node may answer now."""

app = ClientApp()


@app.train()
def train(msg, context):
    """Answer with this node's partition id; the node whose config says ``slow`` waits first."""
    if context.node_config.get("slow"):
        released.wait(60)
    partition = int(context.node_config["partition-id"])
    metrics = MetricRecord({"partition-id": partition})
    return msg.reply(RecordDict({"arrays": MODEL, "metrics": metrics}))


wrong = ClientApp()


@wrong.train()
def reply_with_create(msg, context):
    """The mistake: a new message instead of ``msg.reply``."""
    return Message.create(RecordDict({"arrays": MODEL}), 0, MessageType.TRAIN)


@pytest.fixture
def start_nodes(link):
    """Start nodes running ``client_app`` in threads; they leave when the link says goodbye."""
    threads = []

    def start(client_app, configs):
        for config in configs:
            thread = threading.Thread(
                target=run_node,
                args=(f"127.0.0.1:{link.port}", client_app),
                kwargs={
                    "node_config": config,
                    "chunk_size": 4096,
                    "backoff": Backoff(initial_s=0.05, max_s=0.2, give_up_s=5),
                },
                daemon=True,
            )
            thread.start()
            threads.append(thread)

    yield start
    released.set()
    link.stop(grace_s=0.5)
    for thread in threads:
        thread.join(timeout=10)
    released.clear()


def _count_delivered(grid):
    """Count the replies the link hands to ``grid`` (whatever their fate there)."""
    delivered = []
    take_reply = grid.take_reply

    def counting(*args):
        delivered.append(args)
        return take_reply(*args)

    grid.take_reply = counting
    return delivered


def _once_all_came(grid, message_ids, delivered):
    """Release the slow node once each of ``message_ids``'s replies was delivered or waits
    at the door for its turn (the link has read its first chunk)."""

    def watch():
        with grid._turn:
            while not released.is_set():
                arrived = {reply_to for _, reply_to, _ in delivered} | grid._at_the_door
                if set(message_ids) <= arrived:
                    released.set()
                    return
                grid._turn.wait(0.05)

    threading.Thread(target=watch, daemon=True).start()


@pytest.mark.timeout(60)
def test_a_slow_first_node_leaves_the_link_at_most_two_unfolded_replies(link, start_nodes):
    start_nodes(app, [{"partition-id": p, "slow": p == 0} for p in range(6)])
    grid = link.grid(run_id=1, run_config={})
    nodes = grid.wait_for_nodes(6, timeout_s=20)
    slow = next(n for n in nodes if link.node_config(n)["slow"])
    order = [slow] + [n for n in nodes if n != slow]  # the slow node's message goes first
    ids = grid.send(Message.create(RecordDict({"arrays": MODEL}), n, "train") for n in order)
    delivered = _count_delivered(grid)
    _once_all_came(grid, ids[1:], delivered)
    held, folded = [], []
    for reply in grid.receive_in_order(ids, timeout_s=60):  # as strategies fold them
        held.append(len(delivered) - len(folded))  # on the link and not folded yet
        assert reply.error is None, reply.error
        folded.append(reply.metadata.src_node_id)
    assert folded == order  # folded in send order, whatever order they came in
    assert max(held) <= link.reply_limits.max_open == 2, held


def _reply_frames(message, reply, total=None):
    header = {"reply_to": message.metadata.message_id}
    frames = list(chunk_frames(reply.metadata.message_id, encode_parts(reply), 4096, header))
    if total is not None:
        frames[0].header["total"] = total
    return frames


class _RawNode:
    """A hand-driven node: it registers, says hello, then sends the frames a test gives it."""

    def __init__(self, link):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{link.port}")
        register = self.channel.unary_unary(REGISTER_METHOD)
        me = decode_frame(register(encode_frame(Frame("register", {"node_config": {}})))).header
        self.node_id = me["node_id"]
        self._out = queue.SimpleQueue()
        self.send([Frame("hello", {"node_id": me["node_id"], "token": me["token"]})])
        self.stream = self.channel.stream_stream(CHANNEL_METHOD)(iter(self._out.get, None))

    def send(self, frames):
        for frame in frames:
            self._out.put(encode_frame(frame))

    def work(self):
        """The next message the link pushes to this node."""
        return decode(assemble_one(self.stream, 1 << 30, "work")[1])

    def status(self):
        """How the link ended this node's stream."""
        try:
            for _ in self.stream:
                pass
        except grpc.RpcError as err:
            return err.code(), err.details()
        return grpc.StatusCode.OK, ""

    def close(self):
        self._out.put(None)
        self.stream.cancel()
        self.channel.close()


@pytest.fixture
def allocations(monkeypatch):
    """The sizes of the reply buffers the link's reader threads allocate."""
    sizes = []
    allocate = _frames.allocate

    def recording(total):
        if threading.current_thread().name.startswith("link-node-"):
            sizes.append(total)
        return allocate(total)

    monkeypatch.setattr(_frames, "allocate", recording)
    return sizes


def test_replies_nobody_waits_for_are_refused_at_their_header(raw_link, allocations, caplog):
    node, other = _RawNode(raw_link), _RawNode(raw_link)
    try:
        grid = raw_link.grid(run_id=1, run_config={})
        grid.wait_for_nodes(2, timeout_s=10)
        mine, theirs = grid.send(
            Message.create(RecordDict({"arrays": MODEL}), n, "train")
            for n in (node.node_id, other.node_id)
        )
        work = node.work()
        reply = work.reply(RecordDict({"arrays": MODEL}))
        size = len(b"".join(encode_parts(reply)))
        unknown = work.with_metadata(message_id="no-such-message")
        other_node = work.with_metadata(message_id=theirs)
        with caplog.at_level(logging.INFO, logger="pollinate.link"):
            for stray in (unknown, other_node):  # their chunks are checked and dropped
                node.send(_reply_frames(stray, stray.reply(RecordDict({"arrays": MODEL}))))
            node.send(_reply_frames(work, reply))
            (answer,) = grid.receive([mine], timeout_s=10)
        assert answer.error is None and answer.metadata.reply_to_message_id == mine
        assert allocations == [size]  # only the reply a message waited for got a buffer
        assert "no message waits for it" in caplog.text
        assert f"to a message sent to node {other.node_id}" in caplog.text
    finally:
        node.close()
        other.close()


def _patient_link(**quotas):
    """A link that gives silent nodes 30 s (raw nodes send no heartbeats), 4 KiB chunks."""
    server = Link("127.0.0.1:0", credentials=None, chunk_size=4096, **quotas)
    server.start()
    return server


@pytest.fixture
def raw_link():
    """A link for raw nodes, with the default quotas."""
    server = _patient_link()
    yield server
    server.stop(grace_s=0.5)


@pytest.fixture
def small_link():
    """A link for raw nodes whose quotas are 64 KiB per node and 80 KiB in all."""
    server = _patient_link(max_node_bytes_in_flight=64 << 10, max_bytes_in_flight=80 << 10)
    yield server
    server.stop(grace_s=0.5)


def test_a_reply_over_the_node_quota_is_refused_before_its_buffer(small_link, allocations, caplog):
    node = _RawNode(small_link)
    try:
        grid = small_link.grid(run_id=1, run_config={})
        grid.wait_for_nodes(1, timeout_s=10)
        (sent,) = grid.send([Message.create(RecordDict({"arrays": MODEL}), node.node_id, "train")])
        work = node.work()
        with caplog.at_level(logging.WARNING, logger="pollinate.link"):
            node.send(_reply_frames(work, work.reply(RecordDict()), total=1 << 30)[:1])
            (answer,) = grid.receive([sent], timeout_s=600)
            code, details = node.status()
        assert answer.error.code == ErrorCode.INVALID_REPLY
        assert "1,073,741,824 bytes" in answer.error.reason
        assert "max_node_bytes_in_flight" in answer.error.reason
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "65,536" in details
        assert allocations == []
        assert caplog.text.count("refused node") == 1  # logged once
    finally:
        node.close()


def test_replies_over_the_total_quota_are_refused(small_link, allocations):
    first, second = _RawNode(small_link), _RawNode(small_link)
    try:
        grid = small_link.grid(run_id=1, run_config={})
        grid.wait_for_nodes(2, timeout_s=10)
        ids = grid.send(  # the second node's message goes first: the strategy folds it first
            Message.create(RecordDict({"arrays": MODEL}), n.node_id, "train")
            for n in (second, first)
        )
        delivered = threading.Event()
        take_reply = grid.take_reply

        def take_and_tell(*args):
            take_reply(*args)
            delivered.set()

        grid.take_reply = take_and_tell
        work = first.work()
        first.send(_reply_frames(work, work.reply(RecordDict({"arrays": MODEL}))))
        assert delivered.wait(10)  # 32 KB on the link until the strategy has folded it
        work = second.work()
        second.send(_reply_frames(work, work.reply(RecordDict({"arrays": MODEL})), total=64 << 10))
        refused, folded = grid.receive_in_order(ids, timeout_s=600)
        assert refused.error.code == ErrorCode.INVALID_REPLY
        assert "max_bytes_in_flight" in refused.error.reason
        assert folded.error is None
        assert second.status()[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(allocations) == 1
    finally:
        first.close()
        second.close()


@pytest.mark.timeout(60)  # far below the round's 600 s: the test cannot pass by waiting
def test_a_reply_built_with_message_create_is_an_invalid_reply_at_once(link, start_nodes):
    start_nodes(app, [{"partition-id": 0}])
    start_nodes(wrong, [{"partition-id": 1}])
    grid = link.grid(run_id=1, run_config={})
    nodes = grid.wait_for_nodes(2, timeout_s=20)
    ids = grid.send(Message.create(RecordDict({"arrays": MODEL}), n, "train") for n in nodes)
    replies = {r.metadata.src_node_id: r for r in grid.receive(ids, timeout_s=600)}
    bad = next(n for n in nodes if link.node_config(n)["partition-id"] == 1)
    assert replies[bad].error.code == ErrorCode.INVALID_REPLY
    assert "msg.reply" in replies[bad].error.reason
    good = next(n for n in nodes if n != bad)
    assert replies[good].error is None


@pytest.mark.timeout(60)
def test_a_reply_that_is_not_a_message_is_an_invalid_reply_at_once(raw_link):
    node = _RawNode(raw_link)
    try:
        grid = raw_link.grid(run_id=1, run_config={})
        grid.wait_for_nodes(1, timeout_s=10)
        (sent,) = grid.send([Message.create(RecordDict({"arrays": MODEL}), node.node_id, "train")])
        work = node.work()
        header = {"reply_to": work.metadata.message_id}
        node.send(chunk_frames("garbage", [b"not a message at all"], 4096, header))
        (answer,) = grid.receive([sent], timeout_s=600)
        assert answer.error.code == ErrorCode.INVALID_REPLY
        assert "not a valid message" in answer.error.reason
    finally:
        node.close()


def test_pollinate_link_takes_its_quotas_as_sizes(monkeypatch):
    asked = {}

    def serve_link(*args, **options):
        asked.update(options)
        raise ConfigError("not serving in this test")

    monkeypatch.setattr(deploy, "serve_link", serve_link)
    sizes = ["--max-node-bytes-in-flight", "512MiB", "--max-bytes-in-flight", "1.5GB"]
    done = CliRunner().invoke(cli, ["link", "--insecure", *sizes])
    assert "not serving in this test" in done.output
    assert asked["max_node_bytes_in_flight"] == 512 << 20
    assert asked["max_bytes_in_flight"] == 1_500_000_000
    done = CliRunner().invoke(cli, ["link", "--insecure", "--max-bytes-in-flight", "lots"])
    assert done.exit_code == 2 and "'lots' is not a size" in done.output


def test_a_reply_stalled_past_its_message_loses_its_buffer(raw_link, caplog):
    node = _RawNode(raw_link)
    try:
        grid = raw_link.grid(run_id=1, run_config={})
        grid.wait_for_nodes(1, timeout_s=10)
        (sent,) = grid.send([Message.create(RecordDict({"arrays": MODEL}), node.node_id, "train")])
        work = node.work()
        node.send(_reply_frames(work, work.reply(RecordDict({"arrays": MODEL})))[:1])
        (answer,) = grid.receive([sent], timeout_s=0.5)  # its first chunk came, then nothing
        assert answer.error.code == ErrorCode.TIMEOUT
        with caplog.at_level(logging.WARNING, logger="pollinate.link"):
            node.send([Frame("heartbeat")])  # alive, but the reply it holds open is late
            code, details = node.status()  # the link ended the stream, saying why
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "stalled" in details
        assert "stalled after its message was answered" in caplog.text
    finally:
        node.close()


class _NoLink:
    """What a LinkGrid needs of its link, for grids driven by hand."""

    def push(self, *args):
        return True

    def connected_nodes(self):
        return [1, 2, 3]


def _wait_at_the_door(grid, node_id, message_id, limits):
    """A reader thread that waits for its reply's turn; its answer lands in the list."""
    answer = []
    thread = threading.Thread(
        target=lambda: answer.append(grid.let_in(node_id, message_id, 10, limits, _pass, 0.05)),
        daemon=True,
    )
    thread.start()
    return thread, answer


def _pass():
    pass


@pytest.mark.timeout(30)
def test_a_receive_ends_at_its_timeout_even_behind_messages_nobody_receives():
    grid = LinkGrid(_NoLink(), 7, {})
    grid.send([Message.create(RecordDict(), n, "query") for n in (1, 2)])  # never received
    (third,) = grid.send([Message.create(RecordDict(), 3, "train")])
    door, let_in = _wait_at_the_door(grid, 3, third, ReplyLimits(2, 1 << 30, 1 << 30))
    (reply,) = grid.receive([third], timeout_s=0.2)
    assert reply.error.code == ErrorCode.TIMEOUT and "its turn never came" in reply.error.reason
    door.join(10)
    assert let_in == [False]  # the reader let go of it


@pytest.mark.timeout(30)
def test_replies_a_receive_stopped_waiting_for_are_let_go():
    grid = LinkGrid(_NoLink(), 7, {})
    ids = grid.send([Message.create(RecordDict(), n, "train") for n in (1, 2, 3)])
    door, let_in = _wait_at_the_door(grid, 2, ids[1], ReplyLimits(1, 1 << 30, 1 << 30))
    replies = grid.receive_in_order(ids, timeout_s=3600)
    grid.take_reply(1, ids[0], _reply_to(grid, ids[0]))
    assert next(replies).metadata.reply_to_message_id == ids[0]
    replies.close()  # the ServerApp stopped after the first reply (or failed)
    door.join(10)
    assert let_in == [False] and not grid.waits_for(ids[2])


def _reply_to(grid, message_id):
    sent = grid._waiting[message_id]
    return sent.reply(RecordDict())
