"""Nobody locks the link's doors: budgets per kind of call, registrations that expire, TLS set-up.

Each test plays an attacker (silent streams, calls without a body, floods of registrations)
or a misconfigured node against a link on 127.0.0.1, with small limits and events.
"""

import logging
import threading
import time

import grpc
import pytest

from pollinate.deploy import (
    Backoff,
    IdFile,
    Link,
    NodeKey,
    Verifier,
    channel_credentials,
    make_dev_certs,
    run_node,
    serve_link,
    server_credentials,
)
from pollinate.deploy._control import LIST_METHOD, ControlClient
from pollinate.deploy._frames import Frame, decode_frame, encode_frame
from pollinate.deploy._identity import body_digest, sign
from pollinate.deploy._link import CHANNEL_METHOD, HELLO_KEY, REGISTER_METHOD
from pollinate.deploy._store import Store
from pollinate.errors import ConfigError

from .node_apps import app as node_app
from .processes import start_pollinate

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


class _Silent:
    """Calls that send nothing (no hello, no request body) until ``release``; counts refusals."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.calls: list[grpc.Future] = []
        self.refused: list[str] = []
        self._quiet = threading.Event()
        self._lock = threading.Lock()
        self.all_refused = threading.Event()
        self.expected_refusals = 0

    def _nothing(self):
        self._quiet.wait(60)
        yield from ()

    def _done(self, call) -> None:
        if call.code() == EXHAUSTED:
            with self._lock:
                self.refused.append(call.details())
                if len(self.refused) == self.expected_refusals:
                    self.all_refused.set()

    def open(self, method: str, count: int, refusals: int) -> None:
        """Open ``count`` silent calls of ``method``; ``all_refused`` is set after ``refusals``."""
        self.expected_refusals += refusals
        for _ in range(count):
            call = self.channel.stream_stream(method)(self._nothing())
            call.add_done_callback(self._done)
            self.calls.append(call)

    def release(self) -> None:
        self._quiet.set()
        for call in self.calls:
            call.cancel()


def _register(port: int, key: NodeKey | None = None) -> dict:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return _register_on(channel, key)


def _register_on(channel: grpc.Channel, key: NodeKey | None = None) -> dict:
    request = encode_frame(Frame("register", {"node_config": {}}))
    metadata = (
        None if key is None else sign(key, REGISTER_METHOD, body_digest(request)).to_metadata()
    )
    answer = channel.unary_unary(REGISTER_METHOD)(request, metadata=metadata, timeout=10)
    return decode_frame(answer).header


def _connect(channel: grpc.Channel, me: dict, quiet: threading.Event):
    """Open a node's stream with its hello in the metadata; it stays silent until ``quiet``."""

    def nothing():
        quiet.wait(60)
        yield from ()

    hello = encode_frame(Frame("hello", {"node_id": me["node_id"], "token": me["token"]}))
    return channel.stream_stream(CHANNEL_METHOD)(nothing(), metadata=[(HELLO_KEY, hello)])


def _eventually(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _node_thread(port, partition, **options):
    options.setdefault("backoff", Backoff(initial_s=0.05, max_s=0.2, give_up_s=30))
    thread = threading.Thread(
        target=run_node,
        args=(f"127.0.0.1:{port}", node_app),
        kwargs={"node_config": {"partition-id": partition}, **options},
        daemon=True,
    )
    thread.start()
    return thread


def test_300_silent_streams_block_neither_registration_nor_the_control_service(tmp_path):
    ports = []
    with serve_link("127.0.0.1:0", insecure=True, runs_dir=tmp_path, on_listening=ports.append):
        channel = grpc.insecure_channel(f"127.0.0.1:{ports[0]}")
        silent = _Silent(channel)
        silent.open(CHANNEL_METHOD, 300, refusals=300 - 8)  # 8 per address may wait for hello
        try:
            assert silent.all_refused.wait(30)
            assert "8 streams without a hello from ipv4:127.0.0.1 already" in silent.refused[0]
            assert _register(ports[0])["node_id"] > 0
            with ControlClient(f"127.0.0.1:{ports[0]}", None) as control:
                assert control.runs() == []
        finally:
            silent.release()
            channel.close()


def test_callers_without_an_operator_key_cannot_fill_the_control_reserve(tmp_path):
    operator = NodeKey.generate()
    (tmp_path / "operator.pub").write_bytes(operator.public_pem())
    ports = []
    with serve_link(
        "127.0.0.1:0",
        insecure=True,
        control_keys=tmp_path / "operator.pub",
        on_listening=ports.append,
    ):
        channel = grpc.insecure_channel(f"127.0.0.1:{ports[0]}")
        strangers = _Silent(channel)
        strangers.open(LIST_METHOD, 40, refusals=0)  # unsigned, and no request body
        try:
            _eventually(lambda: all(call.done() for call in strangers.calls))
            codes = {call.code() for call in strangers.calls}
            assert codes == {grpc.StatusCode.UNAUTHENTICATED}  # refused before taking a place
            with ControlClient(f"127.0.0.1:{ports[0]}", None, operator) as control:
                assert control.runs() == []
        finally:
            strangers.release()
            channel.close()


def test_calls_without_hello_or_body_do_not_keep_out_a_node_whose_key_is_listed():
    key = NodeKey.generate()
    link = Link(
        "127.0.0.1:0",
        credentials=None,
        heartbeat_s=0.2,
        verifier=Verifier(registered={key.public_key}),
        max_unauthenticated=2,
        hello_timeout_s=30.0,  # the attacker's calls stay for the whole test
    )
    link.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{link.port}")
    attacker = _Silent(channel)
    try:
        attacker.open(CHANNEL_METHOD, 4, refusals=2)  # the unauthenticated budget: full
        attacker.open(REGISTER_METHOD, 34, refusals=34 - 8)  # without a body: all one may
        assert attacker.all_refused.wait(30)
        node = _node_thread(link.port, 0, key=key)
        _eventually(lambda: len(link.connected_nodes()) == 1)
    finally:
        attacker.release()
        channel.close()
        link.stop(grace_s=0.5)
    node.join(timeout=10)


class _CountingBackoff(Backoff):
    admitted = 0

    def answered(self):
        self.admitted += 1
        super().answered()


def test_a_node_over_max_nodes_is_told_why_retries_and_gets_in_when_room_frees(caplog):
    link = Link("127.0.0.1:0", credentials=None, heartbeat_s=0.2, max_nodes=2)
    link.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{link.port}")
    quiet = threading.Event()
    turned_away = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record):
            if "turned this node away" in record.getMessage():
                turned_away.set()

    watch = Watch()
    logging.getLogger("pollinate.node").addHandler(watch)
    try:
        first, second = (_connect(channel, _register(link.port), quiet) for _ in range(2))
        _eventually(lambda: len(link.connected_nodes()) == 2)
        with caplog.at_level(logging.WARNING):
            backoff = _CountingBackoff(initial_s=0.05, max_s=0.2, give_up_s=30)
            node = _node_thread(link.port, 7, backoff=backoff)
            assert turned_away.wait(20)
            _eventually(lambda: caplog.text.count("turned this node away") >= 3)
            assert backoff.admitted == 0  # registered each time, yet it backs off while refused
            first.cancel()  # room frees: the waiting node gets in
            _eventually(
                lambda: any(
                    link.node_config(n).get("partition-id") == 7 for n in link.connected_nodes()
                )
            )
            _eventually(lambda: backoff.admitted == 1)
        assert "2 nodes are connected, the link's limit (--max-nodes)" in caplog.text
        refusals = [r for r in caplog.records if r.getMessage().startswith("refused a node")]
        assert len(refusals) == 1  # logged once, however often the node retried
        second.cancel()
    finally:
        logging.getLogger("pollinate.node").removeHandler(watch)
        quiet.set()
        channel.close()
        link.stop(grace_s=0.5)
    node.join(timeout=10)


def test_hundreds_of_idle_nodes_connect_and_the_next_is_refused_with_the_reason(tmp_path):
    ports = []
    count = 250
    with serve_link(
        "127.0.0.1:0",
        insecure=True,
        runs_dir=tmp_path,
        on_listening=ports.append,
        max_nodes=count,
    ):
        channel = grpc.insecure_channel(f"127.0.0.1:{ports[0]}")
        quiet = threading.Event()
        try:
            streams = [_connect(channel, _register(ports[0]), quiet) for _ in range(count)]
            extra = _connect(channel, _register(ports[0]), quiet)
            with pytest.raises(grpc.RpcError) as refused:
                next(extra)
            assert refused.value.code() == EXHAUSTED
            assert f"{count} nodes are connected" in refused.value.details()
            with ControlClient(f"127.0.0.1:{ports[0]}", None) as control:
                assert control.runs() == []
            assert all(stream.running() for stream in streams)
        finally:
            quiet.set()
            channel.close()


def test_a_flood_of_registrations_locks_out_neither_new_nodes_nor_keyed_ones(tmp_path):
    keyed = NodeKey.generate()
    store = Store(tmp_path / "link.db")
    link = Link("127.0.0.1:0", credentials=None, verifier=Verifier(), store=store, max_nodes=4)
    link.start()
    try:
        mine = _register(link.port, keyed)["node_id"]
        with grpc.insecure_channel(f"127.0.0.1:{link.port}") as channel:
            for _ in range(1100):  # each with a fresh key: as many registrations as one likes
                _register_on(channel, NodeKey.generate())
        assert len(store.nodes()) <= 4 * 4 + 1  # the oldest made room for the newest
        assert _register(link.port, keyed)["node_id"] == mine  # at once, with its id
        newcomer = _register(link.port, NodeKey.generate())
        assert newcomer["node_id"] in {n[0] for n in store.nodes()}
    finally:
        link.stop(grace_s=0.5)
        store.close()


def test_a_registration_with_a_huge_node_config_is_refused(link):
    request = encode_frame(Frame("register", {"node_config": {"x": "y" * 20_000}}))
    with (
        grpc.insecure_channel(f"127.0.0.1:{link.port}") as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        channel.unary_unary(REGISTER_METHOD)(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "more than the 16 KiB allowed" in refused.value.details()


def test_keyless_registrations_room_and_expiry_survive_a_restart_with_db(tmp_path):
    store = Store(tmp_path / "link.db")
    link = Link("127.0.0.1:0", credentials=None, store=store, max_nodes=2)
    link.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{link.port}") as channel:
            for _ in range(1100):
                _register_on(channel)
        assert len(store.nodes()) <= 2 * 4
    finally:
        link.stop(grace_s=0.5)
    restarted = Link("127.0.0.1:0", credentials=None, store=store, registration_expiry_s=0.2)
    restarted.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{restarted.port}")
    quiet = threading.Event()
    try:
        me = _register(restarted.port)
        stream = _connect(channel, me, quiet)
        _eventually(lambda: restarted.connected_nodes() == [me["node_id"]])
        _eventually(lambda: [n[0] for n in store.nodes()] == [me["node_id"]])
        stream.cancel()  # a node that leaves is forgotten too, after the expiry
        _eventually(lambda: store.nodes() == [])
    finally:
        quiet.set()
        channel.close()
        restarted.stop(grace_s=0.5)
        store.close()


def test_a_restarted_keyless_node_gets_its_id_back(tmp_path, link):
    id_file = tmp_path / "node.json"
    node = start_pollinate(
        "node", "--link", f"127.0.0.1:{link.port}", "--insecure", "--id-file", id_file
    )
    try:
        _eventually(lambda: len(link.connected_nodes()) == 1)
        (first,) = link.connected_nodes()
        node.kill()
        node.communicate(timeout=10)
        _eventually(lambda: link.connected_nodes() == [])
        node = start_pollinate(
            "node", "--link", f"127.0.0.1:{link.port}", "--insecure", "--id-file", id_file
        )
        _eventually(lambda: link.connected_nodes() == [first])
    finally:
        node.kill()
        node.communicate(timeout=10)
    assert len(link._nodes) == 1  # one registration, not one per restart


def test_two_running_nodes_never_share_an_id_file(tmp_path):
    first = IdFile.claim(tmp_path / "node.json", "127.0.0.1:1")
    second = IdFile.claim(tmp_path / "node.json", "127.0.0.1:1")
    try:
        assert second.path.name == "node-2.json"
        first.write(5, "secret")
        assert first.read() == (5, "secret")
        assert IdFile.claim(tmp_path / "other.json", "127.0.0.1:2").read() is None
    finally:
        first.close()
        second.close()
    again = IdFile.claim(tmp_path / "node.json", "127.0.0.1:1")
    assert again.path.name == "node.json" and again.read() == (5, "secret")
    again.close()


@pytest.fixture(scope="module")
def two_cas(tmp_path_factory):
    return make_dev_certs(tmp_path_factory.mktemp("a")), make_dev_certs(
        tmp_path_factory.mktemp("b")
    )


@pytest.mark.parametrize(
    ("link_tls", "node_tls", "says"),
    [
        ("a", "b", "is not signed by the CA this node trusts"),
        ("a", None, "it probably speaks TLS"),
        (None, "a", "the link does not speak TLS"),
    ],
)
def test_a_tls_mismatch_is_named_and_the_node_stops_after_a_few_handshakes(
    two_cas, link_tls, node_tls, says, caplog
):
    certs = dict(zip("ab", two_cas, strict=True))
    link = Link(
        "127.0.0.1:0",
        credentials=link_tls and server_credentials(certs[link_tls].ca_cert.parent),
    )
    link.start()
    try:
        with (
            caplog.at_level(logging.WARNING, logger="pollinate.node"),
            pytest.raises(ConfigError, match=f"{says}.*3 times in a row, giving up"),
        ):
            run_node(
                f"127.0.0.1:{link.port}",
                node_app,
                credentials=node_tls and channel_credentials(certs[node_tls].ca_cert),
                backoff=Backoff(initial_s=0.01, max_s=0.02),
                max_handshake_failures=3,
            )
    finally:
        link.stop(grace_s=0.5)
    assert caplog.text.count(says) == 2  # two retries, then the error
    if node_tls:
        assert "TLS handshake with 127.0.0.1" in caplog.text


def test_plain_text_and_a_link_without_node_identity_each_warn_once(caplog, start_nodes, link):
    with caplog.at_level(logging.WARNING):
        other = Link("127.0.0.1:0", credentials=None)
        other.start()
        other.stop(grace_s=0.5)
        quiet_key = NodeKey.generate()
        keyed = Link(
            "127.0.0.1:0", credentials=None, verifier=Verifier(registered={quiet_key.public_key})
        )
        keyed.start()
        keyed.stop(grace_s=0.5)
    link_lines = [r.getMessage() for r in caplog.records if r.name == "pollinate.link"]
    assert sum("plain text (--insecure)" in line for line in link_lines) == 2
    assert sum("no node identity" in line for line in link_lines) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pollinate.node"):
        start_nodes(1)
        _eventually(lambda: len(link.connected_nodes()) == 1)
    node_lines = [r.getMessage() for r in caplog.records if r.name == "pollinate.node"]
    assert sum("plain text (--insecure)" in line for line in node_lines) == 1


class _Call:
    """Just enough of a gRPC servicer context for a Gate."""

    def __init__(self, peer):
        self._peer = peer
        self.callbacks = []

    def peer(self):
        return self._peer

    def add_callback(self, callback):
        self.callbacks.append(callback)
        return True

    def abort(self, code, details):
        raise grpc.RpcError(code, details)

    def end(self):
        for callback in self.callbacks:
            callback()


def test_a_gate_limits_one_address_and_logs_its_refusals_once(caplog):
    from pollinate.deploy._admission import Gate

    gate = Gate("registrations", 3, "3 registrations are going on", per_host=2)
    first, second, third = (_Call(f"ipv4:10.0.0.1:{port}") for port in (1, 2, 3))
    gate.enter(first)
    gate.enter(second)
    with caplog.at_level(logging.WARNING, logger="pollinate.link"):
        for _ in range(5):
            with pytest.raises(grpc.RpcError) as refused:
                gate.enter(third)
    assert refused.value.args == (
        EXHAUSTED,
        "2 registrations from ipv4:10.0.0.1 already; retry later",
    )
    assert len(caplog.records) == 1  # five refusals, one line
    elsewhere = _Call("ipv6:[::1]:4")
    gate.enter(elsewhere)  # another address still gets in, up to the total
    with pytest.raises(grpc.RpcError, match="3 registrations are going on"):
        gate.enter(_Call("ipv4:10.0.0.9:5"))
    first.end()
    first.end()  # a place is given back once
    gate.enter(third)
    with pytest.raises(grpc.RpcError):
        gate.enter(_Call("ipv4:10.0.0.9:6"))


def test_a_link_certificate_that_does_not_name_the_dialled_host_is_named(two_cas):
    link = Link("127.0.0.2:0", credentials=server_credentials(two_cas[0].ca_cert.parent))
    link.start()
    try:
        with pytest.raises(ConfigError, match=r"does not name 127\.0\.0\.2.*--hostname"):
            run_node(
                f"127.0.0.2:{link.port}",
                node_app,
                credentials=channel_credentials(two_cas[0].ca_cert),
                backoff=Backoff(initial_s=0.01, max_s=0.02),
                max_handshake_failures=2,
            )
    finally:
        link.stop(grace_s=0.5)
