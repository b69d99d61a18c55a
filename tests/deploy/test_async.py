"""Asynchrony over the link: receive_first and abandon on its grid, and FedBuff deployed."""

import threading

import pytest

from pollinate import RecordDict
from pollinate.deploy import Backoff, run_node, serve_link
from pollinate.deploy._bundle import pack_app
from pollinate.deploy._grid import LinkGrid, ReplyLimits
from pollinate.deploy._store import AppRef
from pollinate.errors import PollinateError
from pollinate.loader import load_object
from pollinate.message import Message, MessageType
from pollinate.server import ServerApp

from .submitted import write_app


class _FakeLink:
    def push(self, node_id, message_id, parts, header):
        return True


def _sent(nodes):
    """A LinkGrid on a fake link with one train message sent to each of ``nodes``."""
    grid = LinkGrid(_FakeLink(), 1, {})
    ids = grid.send([Message.create(RecordDict(), node, MessageType.TRAIN) for node in nodes])
    return grid, ids, {m.metadata.message_id: m for m in grid._waiting.values()}


def _answer(grid, sent, message_id, max_open, let_in=None):
    """The node's side: wait to be let in (``let_in`` is set then), then reply."""
    message = sent[message_id]
    node = message.metadata.dst_node_id
    limits = ReplyLimits(max_open, node_bytes=1 << 20, total_bytes=1 << 20)
    assert grid.let_in(node, message_id, 0, limits, keep_alive=lambda: None, period_s=0.02)
    if let_in is not None:
        let_in.set()
    grid.take_reply(node, message_id, message.reply(RecordDict()))


def _answer_in_thread(*args):
    thread = threading.Thread(target=_answer, args=args, daemon=True)
    thread.start()
    return thread


def test_a_fast_node_is_not_held_behind_slow_ones_sent_before_it():
    # With two slow nodes first in the send order and a window of two, an ordered receive
    # would keep node 3's reply at the door; receive_first lets it in at once.
    grid, ids, sent = _sent([1, 2, 3])
    node3 = _answer_in_thread(grid, sent, ids[2], 2)
    reply = grid.receive_first(ids, timeout_s=30)
    node3.join(timeout=10)
    assert reply.metadata.reply_to_message_id == ids[2] and reply.error is None
    assert grid.waits_for(ids[0]) and grid.waits_for(ids[1])  # nothing abandoned


def test_replies_awaited_first_come_still_count_against_the_window():
    grid, ids, sent = _sent([1, 2])
    _answer_in_thread(grid, sent, ids[0], 1).join(timeout=10)
    first = grid.receive_first(ids, timeout_s=30)
    assert first.metadata.reply_to_message_id == ids[0]
    let_in = threading.Event()
    node2 = _answer_in_thread(grid, sent, ids[1], 1, let_in)
    assert not let_in.wait(0.2)  # the ServerApp still holds the first reply
    second = grid.receive_first([ids[1]], timeout_s=30)  # done with the first
    node2.join(timeout=10)
    assert let_in.is_set() and second.metadata.reply_to_message_id == ids[1]


def test_the_replies_not_taken_first_stay_pending_for_the_next_call():
    grid, ids, sent = _sent([1, 2])
    for message_id in ids:
        _answer_in_thread(grid, sent, message_id, 4).join(timeout=10)
    first = grid.receive_first(ids, timeout_s=30)
    rest = [i for i in ids if i != first.metadata.reply_to_message_id]
    second = grid.receive_first(rest, timeout_s=30)
    assert second.metadata.reply_to_message_id == rest[0] and second.error is None


def test_after_the_timeout_none_comes_and_nothing_fails_or_is_abandoned():
    grid, ids, sent = _sent([1, 2])
    assert grid.receive_first(ids, timeout_s=0.05) is None
    assert grid.waits_for(ids[0]) and grid.waits_for(ids[1])
    _answer_in_thread(grid, sent, ids[1], 4).join(timeout=10)
    reply = grid.receive_first(ids, timeout_s=30)
    assert reply.metadata.reply_to_message_id == ids[1] and reply.error is None
    assert grid.receive_first([ids[0]], timeout_s=0) is None and grid.waits_for(ids[0])


def test_an_abandoned_message_s_reply_is_dropped_when_it_comes():
    grid, ids, sent = _sent([1, 2])
    grid.abandon([ids[1]])
    assert not grid.waits_for(ids[1])
    assert not grid.take_reply(2, ids[1], sent[ids[1]].reply(RecordDict()))
    with pytest.raises(PollinateError, match="no reply will come"):
        grid.receive_first([ids[1]], timeout_s=1)


ASYNC_APPS = '''\
"""Each node adds 1 after its delay; node config ``hold``: wait for that file first."""
import os
import time

import numpy as np

from pollinate import ArrayRecord, ClientApp, MetricRecord, RecordDict, ServerApp
from pollinate.strategy import FedBuff

client = ClientApp()
server = ServerApp()


@client.train()
def train(msg, context):
    hold = str(context.node_config.get("hold", ""))
    while hold and not os.path.exists(hold):
        time.sleep(0.02)
    time.sleep(float(context.node_config.get("delay", 0.0)))
    partition = int(context.node_config["partition-id"])
    new = {k: a.numpy() + 1.0 for k, a in msg.content.arrays().items()}
    metrics = {"num-examples": 1, **{f"node-{p}": float(p == partition) for p in range(4)}}
    return msg.reply(RecordDict({"arrays": ArrayRecord(new), "metrics": MetricRecord(metrics)}))


@client.evaluate()
def evaluate(msg, context):
    metrics = MetricRecord({"num-examples": 1, "accuracy": 0.5})
    return msg.reply(RecordDict({"metrics": metrics}))


@server.main()
def main(grid, context):
    strategy = FedBuff(
        buffer_size=2, concurrency=4, min_available_nodes=4, fraction_evaluate=0.25
    )
    return strategy.start(grid, ArrayRecord({"w": np.zeros(3)}), num_rounds=4)
'''


@pytest.mark.parametrize("in_child", [True, False], ids=["in-its-process", "in-the-link"])
def test_fedbuff_runs_deployed_and_the_fast_nodes_make_the_versions(tmp_path, in_child):
    """Nodes of three speeds: no delay, 0.1 s, and two held until the run is over.

    The held nodes' tasks stay first in the send order: a link that let replies in only
    in their turn (two at a time) would keep every later reply out, and the run would hang.
    """
    app_dir = write_app(tmp_path / "app")
    (app_dir / "tinyapp" / "apps.py").write_text(ASYNC_APPS)
    bundle = pack_app(app_dir)
    release = tmp_path / "release"
    ports, nodes = [], []
    with serve_link(
        "127.0.0.1:0", insecure=True, runs_dir=tmp_path / "runs", on_listening=ports.append
    ) as runs:
        runs.start()
        held = {"hold": str(release)}
        speeds = [{"delay": 0.0}, {"delay": 0.1}, held, held]
        for partition, speed in enumerate(speeds):
            node = threading.Thread(
                target=run_node,
                args=(f"127.0.0.1:{ports[0]}", None),
                kwargs={
                    "node_config": {"partition-id": partition, **speed},
                    "backoff": Backoff(initial_s=0.05, max_s=0.2, give_up_s=10),
                    "app_cache": tmp_path / "cache" / str(partition),
                },
                daemon=True,
            )
            node.start()
            nodes.append(node)
        try:
            app = AppRef(bundle.digest, "tinyapp.apps:server", "tinyapp.apps:client")
            here = (
                {}
                if in_child
                else {"server_app": load_object(app.serverapp, ServerApp, app_dir, fresh=True)}
            )
            run_id = runs.submit(
                "tinyapp", {}, bundle=bundle, app=app, min_nodes=4, wait_s=30, **here
            )
            result = runs.wait(run_id, timeout_s=60)
        finally:
            release.touch()  # the held node answers (its reply is dropped) and can leave
    for node in nodes:
        node.join(timeout=10)
    versions = [r for r in result.rounds if r.train is not None]
    assert [r.server_round for r in versions] == [1, 2, 3, 4]
    assert all(r.train.num_ok == 2 and not r.train.failures for r in versions)
    # the node whose reply made a version is free then: it evaluates the version
    assert all(r.evaluate.num_ok == 1 and r.evaluate.metrics["accuracy"] == 0.5 for r in versions)
    updates = {p: sum(2 * r.train.metrics[f"node-{p}"] for r in versions) for p in range(4)}
    assert updates[2] == updates[3] == 0 and updates[0] + updates[1] == pytest.approx(8)
    for record in versions:
        assert record.train.metrics["fedbuff.staleness-mean"] >= 0
        assert record.train.metrics["fedbuff.staleness-max"] >= 0
    assert result.arrays["w"].numpy()[0] > 0


class _Recording(LinkGrid):
    """A link's grid that answers ``now`` with a clock, to see the pipe carry it."""

    def now(self):
        return 12.5


def test_the_link_s_end_of_the_pipe_carries_out_the_asynchronous_calls():
    from pollinate.deploy import _serverproc as serverproc
    from pollinate.deploy._pipe import ProtocolError

    grid = _Recording(_FakeLink(), 1, {})
    ids = grid.send([Message.create(RecordDict(), node, MessageType.TRAIN) for node in (1, 2)])
    process = serverproc.ServerProcess(max_idle_s=5.0, stopping=lambda: False)
    empty = memoryview(b"")
    assert process._call(grid, "now", {}, empty) == ({"ok": 12.5}, [])
    assert process._call(grid, "abandon", {"ids": [ids[1]]}, empty) == ({"ok": None}, [])
    assert not grid.waits_for(ids[1])
    header = {"ids": [ids[0]], "timeout_s": 0.01}
    assert process._call(grid, "receive_first", header, empty) == ({"ok": None}, [])
    assert grid.waits_for(ids[0])  # nothing failed on the timeout
    with pytest.raises(ProtocolError, match="message ids must be a list of strings"):
        process._call(grid, "abandon", {"ids": [1]}, empty)


@pytest.mark.parametrize("op", ["receive", "receive_first"])
def test_a_timeout_too_large_for_a_float_is_a_protocol_error(op):
    from pollinate.deploy import _serverproc as serverproc
    from pollinate.deploy._pipe import ProtocolError

    grid = LinkGrid(_FakeLink(), 1, {})
    ids = grid.send([Message.create(RecordDict(), 1, MessageType.TRAIN)])
    process = serverproc.ServerProcess(max_idle_s=5.0, stopping=lambda: False)
    header = {"ids": ids, "timeout_s": 10**400}
    with pytest.raises(ProtocolError, match=f"a malformed {op!r} call"):
        process._call(grid, op, header, memoryview(b""))


class _Parent:
    """The link's end of the pipe, scripted: each call gets the next answer."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.waits = []

    def call(self, header, parts=()):
        self.waits.append(header["timeout_s"])
        return self.answers.pop(0)


def test_the_serverapp_s_grid_asks_again_while_its_wait_is_not_over():
    from pollinate import wire
    from pollinate.deploy._serverchild import ProxyGrid

    message = Message.create(RecordDict(), 1, MessageType.TRAIN)
    payload = memoryview(b"".join(bytes(p) for p in wire.encode_parts(message.reply(RecordDict()))))
    none = ({"ok": None}, memoryview(b""))
    parent = _Parent([none, none, ({"ok": True}, payload)])
    grid = ProxyGrid(parent, 1)
    reply = grid.receive_first(["a"])  # no timeout: the link's capped waits are asked again
    assert reply.metadata.reply_to_message_id == message.metadata.message_id
    assert parent.waits == [None, None, None]
    parent.answers = [none]
    assert grid.receive_first(["a"], timeout_s=0) is None and parent.waits[-1] == 0.0
