"""The link: the gRPC server that nodes connect to, and the Grid a ServerApp drives through it.

Fleet service (raw-bytes gRPC methods, frames from ``_frames``):

- ``Register`` (unary): a node says its node config (and, reconnecting, its node id and
  token); the link answers with its node id, a secret token and the heartbeat period.
- ``Channel`` (bidirectional stream): the node says ``hello`` (node id and token) in the
  call's metadata, so the link admits or refuses the stream before it reads from it (a
  ``hello`` as the first frame is taken too, within ``hello_timeout_s``, from a small
  budget of its own). The link then pushes work down the stream as ``chunk`` frames, the
  node pushes replies back the same way, plus a ``heartbeat`` frame every period.
- ``GetApp`` (unary request, streamed answer): a node without its own copy of a submitted
  app fetches the app's bundle by digest, in ``chunk`` frames.

A node whose stream ends, or whose heartbeats stop for ``node_timeout_s``, is lost: every
message still waiting on it gets a NODE_UNAVAILABLE error reply, so a round goes on with the
replies it has. Replies that nobody waits for (late, unknown, or from a node that was not
asked) are dropped with a logged reason, and the link keeps serving.

As it works the link counts, per node, the tasks sent, the replies ok, and the failures
with their reasons (``Link.node_status``, Control's ``ListNodes``, ``_nodestats``).

Every kind of call has its own budget (``_admission``): at most ``max_nodes`` connected
nodes, a few streams waiting for their hello, a few registrations at once (and a reserve
for nodes whose key the link lists), and a reserve for the Control service that node
traffic cannot take. Registrations that are not connected are forgotten after
``registration_expiry_s``, and the oldest of them make room when there are too many, so
no flood of registrations locks new nodes out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from ..context import UserConfigValue
from ..errors import AuthError, ConfigError, StorageError, WireError
from ..message import SERVER_NODE_ID
from ..wire import decode
from ._admission import Gate, GatedService, RateLimitedLog, Screen, first_request
from ._frames import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    Assembler,
    Frame,
    chunk_frames,
    decode_frame,
    encode_frame,
    frame_limit,
)
from ._grid import LinkGrid, QuotaExceeded, ReplyLimits
from ._identity import PUBLIC_KEY_KEY, Verifier, body_digest
from ._nodestats import NodeStats, NodeStatus
from ._peers import ClientCerts, Peer
from ._sealed import unseal
from ._store import AppRef, Store

__all__ = ["CHANNEL_METHOD", "GET_APP_METHOD", "REGISTER_METHOD", "Link"]

log = logging.getLogger("pollinate.link")

SERVICE = "pollinate.v1.Fleet"
REGISTER_METHOD = f"/{SERVICE}/Register"
CHANNEL_METHOD = f"/{SERVICE}/Channel"
GET_APP_METHOD = f"/{SERVICE}/GetApp"
HELLO_KEY = "pollinate-hello-bin"
"""The Channel call's metadata key for the node's ``hello`` frame."""
WELCOME_KEY = "pollinate-welcome"
"""The link's answer in a Channel's initial metadata: the stream is admitted."""
DEFAULT_MAX_MESSAGE_SIZE = 16 << 30
"""16 GiB: larger announced messages are refused before any memory is set aside."""
DEFAULT_MAX_NODES = 1000
CONTROL_CALLS = 16
"""Control calls at once (``pollinate run/ls/log/stop``): reserved, nodes cannot take them."""
REQUEST_CALLS = 32
"""Register and GetApp calls at once; as many again for nodes whose key the link lists."""
MAX_NODE_CONFIG_SIZE = 16 << 10
"""16 KiB of JSON: the link keeps thousands of registrations, so each must stay small."""
PER_HOST = 8
"""Of those, and of the streams waiting for a hello, at most this many from one address."""
IDLE_PER_NODE = 4
"""Registrations kept that are not connected: this many per ``max_nodes``, the oldest go."""
SPARE_THREADS = 16
"""Threads beyond the budgets, for the calls being refused."""
DEFAULT_NODE_BYTES_IN_FLIGHT = 4 << 30
"""4 GiB: one node's unfolded replies on the link (a 1-billion-parameter float32 model)."""
DEFAULT_BYTES_IN_FLIGHT = 8 << 30
"""8 GiB: all nodes' unfolded replies on the link, a third of a 24 GB machine (two replies
of the largest size one node may send: the link takes two at a time)."""


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """One item of a node's outbox: a message to push, or the end of the stream."""

    message_id: str = ""
    parts: list[bytes | memoryview] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)
    end: str = ""
    """``"bye"``: the link is stopping, tell the node; ``"close"``: just end the stream;
    ``"refused"``: end it with the status and reason in ``header``."""


_BYE = _Outgoing(end="bye")
_CLOSE = _Outgoing(end="close")


@dataclass(eq=False)
class _Node:
    """A node the link knows: its identity, its config and its queue of work."""

    node_id: int
    token: str
    node_config: dict[str, UserConfigValue]
    public_key: bytes | None
    """The key that registered this node id: a signing key, or the SubjectPublicKeyInfo of
    its client certificate (None on a link without node identity)."""
    outbox: queue.SimpleQueue[_Outgoing] = field(default_factory=queue.SimpleQueue)
    stream: int = 0
    """Which of the node's streams is current (a reconnect opens a new one)."""
    last_seen: float = field(default_factory=time.monotonic)
    heard_at: float | None = None
    """When the node's last frame (or stream) came, in unix seconds (None: not since the
    link started); ``last_seen`` is on the monotonic clock, for timeouts."""
    connected: bool = False
    downloading: bool = False
    """Whether the node fetches an app now (one at a time)."""
    cert: Peer | None = None
    """The client certificate of the node's current stream (mutual TLS), checked for
    revocation while the stream lasts."""


class Link:
    """The gRPC server nodes connect to; ``grid()`` gives the ServerApp its view of them.

    ``credentials`` are the server's TLS credentials (None: plain text, for tests and
    ``--insecure`` only). ``chunk_size`` bounds each gRPC message; ``max_message_size``
    bounds what a node may send. With a ``verifier`` every node must sign its registration
    and every frame with its key (``Verifier(registered=...)`` admits listed keys only), and
    a node id stays bound to the key that registered it. With ``clients`` (mutual TLS:
    ``credentials`` must require client certificates) every call must come with a node
    certificate they admit, and a node id stays bound to its certificate's public key; a
    node whose certificate is revoked loses its stream. With a ``store`` the nodes keep
    their ids (and tokens) when the link restarts. At most ``max_open_replies`` replies
    come in at once, in the order their messages were sent (the order strategies fold
    them in): the link holds a few replies at a time, not one per node, and a reply is held
    until the strategy has folded it. A reply no message waits for is refused at its first
    chunk, before any memory is set aside. The replies the link holds may take at most
    ``max_node_bytes_in_flight`` bytes per node and ``max_bytes_in_flight`` in all; a reply
    over either is an INVALID_REPLY failure and its node's stream ends (RESOURCE_EXHAUSTED).

    At most ``max_nodes`` nodes are connected at once, and ``max_unauthenticated`` streams
    wait for their first-frame hello, for ``hello_timeout_s`` each. Registrations not
    connected for ``registration_expiry_s`` are forgotten (except those of listed keys).
    """

    def __init__(
        self,
        address: str = "127.0.0.1:0",
        *,
        credentials: grpc.ServerCredentials | None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        heartbeat_s: float = 5.0,
        node_timeout_s: float = 30.0,
        max_nodes: int = DEFAULT_MAX_NODES,
        verifier: Verifier | None = None,
        clients: ClientCerts | None = None,
        store: Store | None = None,
        hello_timeout_s: float = 5.0,
        max_open_replies: int = 2,
        max_unauthenticated: int = 32,
        registration_expiry_s: float = 600.0,
        max_node_bytes_in_flight: int = DEFAULT_NODE_BYTES_IN_FLIGHT,
        max_bytes_in_flight: int = DEFAULT_BYTES_IN_FLIGHT,
    ) -> None:
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ConfigError(
                f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}, got {chunk_size}"
            )
        if max_nodes < 1:
            raise ConfigError(f"max_nodes must be at least 1, got {max_nodes}")
        if verifier is not None and clients is not None:
            raise ConfigError(
                "choose one kind of node identity: client certificates (--mtls, --node-certs) "
                "or signing keys (--node-keys, --require-signatures)"
            )
        if min(max_node_bytes_in_flight, max_bytes_in_flight) < 1:
            raise ConfigError("the link's quotas of bytes in flight must be at least 1 byte")
        self.reply_limits = ReplyLimits(
            max_open_replies, max_node_bytes_in_flight, max_bytes_in_flight
        )
        self.address = address
        self.chunk_size = chunk_size
        self.max_message_size = max_message_size
        self.heartbeat_s = heartbeat_s
        self.node_timeout_s = node_timeout_s
        self.hello_timeout_s = hello_timeout_s
        self.max_nodes = max_nodes
        self.registration_expiry_s = registration_expiry_s
        self._credentials = credentials
        self._verifier = verifier
        self._clients = clients
        self._store = store
        self._nodes: dict[int, _Node] = {}
        self._stats = NodeStats()
        for node_id, token, public_key, config in store.nodes() if store else []:
            self._nodes[node_id] = _Node(node_id, token, config, public_key)
            self._stats.add(node_id)
        self._lock = threading.Lock()
        self._connected = 0
        self._full = RateLimitedLog()
        self._crowded = RateLimitedLog()
        self._grid: LinkGrid | None = None
        self._stopping = threading.Event()
        self._control = Gate(
            "Control calls", CONTROL_CALLS, f"{CONTROL_CALLS} Control calls are going on"
        )
        self._requests = Gate(
            "registrations",
            REQUEST_CALLS,
            f"{REQUEST_CALLS} registrations are going on",
            per_host=PER_HOST,
        )
        self._keyed = Gate(
            "registrations of listed keys",
            REQUEST_CALLS,
            f"{REQUEST_CALLS} registrations of listed keys are going on",
            per_host=PER_HOST,
        )
        self._unauthenticated = Gate(
            "streams without a hello",
            max_unauthenticated,
            f"{max_unauthenticated} streams wait for their hello",
            per_host=PER_HOST,
        )
        limit = frame_limit(chunk_size)
        # Every admitted call holds one thread: the pool has one for each, and spares for
        # the calls being refused. No global cap: each kind of call has its own (_admission).
        threads = CONTROL_CALLS + 2 * REQUEST_CALLS + max_unauthenticated + 2 * max_nodes
        self._server = grpc.server(
            futures.ThreadPoolExecutor(threads + SPARE_THREADS, thread_name_prefix="link"),
            handlers=[self._handlers()],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),  # a second link on a busy port must fail, not share it
            ],
        )
        self.port = 0
        self.bundles: Callable[[str], bytes | None] = lambda digest: None
        """Submitted apps' bundles by digest, for ``GetApp`` (set by the link's ``Runs``)."""
        self._watchdog = threading.Thread(target=self._watch, name="link-watchdog", daemon=True)

    def start(self) -> int:
        """Start serving; returns the port (useful with port 0, which picks a free one)."""
        try:
            if self._credentials is None:
                self.port = self._server.add_insecure_port(self.address)
            else:
                self.port = self._server.add_secure_port(self.address, self._credentials)
        except RuntimeError as err:
            raise ConfigError(f"cannot listen on {self.address}: {err}") from None
        self._server.start()
        self._watchdog.start()
        log.info(
            "link listening on port %d (%s)",
            self.port,
            "mutual TLS" if self._clients else "TLS" if self._credentials else "plain text",
        )
        if self._credentials is None:
            log.warning(
                "plain text (--insecure): anyone on the network path can read and change "
                "the models, metrics and code that travel, and take the nodes' tokens"
            )
        if self._verifier is None and self._clients is None:
            log.warning(
                "no node identity (--mtls, --node-certs or --node-keys): anyone who can "
                "reach port %d can join as a node and receive the runs' models and code",
                self.port,
            )
        return self.port

    def stop(self, grace_s: float = 2.0) -> None:
        """Say goodbye to the nodes and stop serving."""
        self._stopping.set()
        with self._lock:
            nodes = list(self._nodes.values())
        for node in nodes:
            node.outbox.put(_BYE)
        self._server.stop(grace_s).wait()

    def __enter__(self) -> Link:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_service(self, handler: grpc.GenericRpcHandler, screen: Screen | None = None) -> None:
        """Serve another gRPC service (the Control service) beside Fleet; before ``start``.

        Its calls share a reserve of ``CONTROL_CALLS`` that node traffic never takes;
        ``screen`` refuses callers who may not call it before they take a place there.
        """
        gated = GatedService(handler, self._control, self.hello_timeout_s, screen)
        self._server.add_generic_rpc_handlers((gated,))

    def grid(
        self,
        run_id: int,
        run_config: Mapping[str, UserConfigValue],
        app: AppRef | None = None,
        name: str | None = None,
    ) -> LinkGrid:
        """The Grid for one run over the connected nodes (one run at a time)."""
        grid = LinkGrid(self, run_id, dict(run_config), app, name, self._stats)
        with self._lock:
            self._grid = grid
        return grid

    def release(self, grid: LinkGrid | None) -> None:
        """The run on ``grid`` ended: replies that still come for it are dropped."""
        with self._lock:
            if self._grid is grid:
                self._grid = None

    def connected_nodes(self) -> list[int]:
        """The ids of the nodes with a live stream."""
        with self._lock:
            return sorted(n.node_id for n in self._nodes.values() if n.connected)

    def node_status(self) -> list[NodeStatus]:
        """Every node the link knows, by node id: connected or not, last heard, its tasks."""
        with self._lock:
            nodes = [
                (n.node_id, n.connected, n.heard_at, dict(n.node_config))
                for n in self._nodes.values()
            ]
        return [self._stats.status(*node) for node in sorted(nodes, key=lambda n: n[0])]

    def node_config(self, node_id: int) -> dict[str, UserConfigValue]:
        """The node config a node registered with."""
        with self._lock:
            return dict(self._nodes[node_id].node_config)

    def push(
        self, node_id: int, message_id: str, parts: list[bytes | memoryview], header: dict[str, Any]
    ) -> bool:
        """Queue a message for a node; False if the node is not connected."""
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None or not node.connected:
                return False
            node.outbox.put(_Outgoing(message_id, parts, header))
            return True

    # The Fleet service ------------------------------------------------------------------

    def _handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                # Unary for the nodes; the link reads each request itself (_admission).
                "Register": grpc.stream_unary_rpc_method_handler(self._register),
                "Channel": grpc.stream_stream_rpc_method_handler(self._channel),
                "GetApp": grpc.stream_stream_rpc_method_handler(self._get_app),
            },
        )

    def _request_gate(self, context: grpc.ServicerContext) -> Gate:
        """Registrations and app requests: a reserve for keys the link lists, one for others.

        Chosen by the key the call's metadata names, before its body is read: a flood of
        anonymous calls cannot keep out the nodes the link was told to expect.
        """
        if self._clients is not None:  # the handshake admitted it: a certificate the CA signed
            return self._keyed
        key = _metadata(context, PUBLIC_KEY_KEY)
        listed = key is not None and self._verifier is not None and self._verifier.lists(key)
        return self._keyed if listed else self._requests

    def _peer(self, context: grpc.ServicerContext) -> Peer | None:
        """The caller's node certificate (mutual TLS), checked; None on other links.

        AuthError if the link may not admit it (PermissionError: not a node's).
        """
        return None if self._clients is None else self._clients.check(context, "node")

    def _identify(self, context: grpc.ServicerContext, method: str, request: bytes) -> bytes | None:
        """The public key a request comes from: its certificate's, or the one that signed it."""
        peer = self._peer(context)
        if peer is not None:
            return peer.spki
        if self._verifier is None:
            return None
        return self._verifier.verify_metadata(
            method, body_digest(request), context.invocation_metadata()
        )

    def _get_app(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        """A submitted app's bundle, for a registered node that has no copy of the app."""
        place = self._request_gate(context).enter(context)
        request = first_request(requests, context, self.hello_timeout_s)
        try:
            signer = self._identify(context, GET_APP_METHOD, request)
            frame = decode_frame(request)
            if frame.kind != "get_app":
                raise WireError(f"expected a get_app frame, got {frame.kind!r}")
            node = self._node_for(Frame("hello", frame.header))
            if node is None or node.public_key != signer:
                raise AuthError("unknown node id or wrong token: register first")
        except (AuthError, PermissionError) as err:
            log.warning("refused an app request from %s: %s", context.peer(), err)
            context.abort(_auth_code(err), str(err))
            return
        except WireError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            return
        place.leave()  # a known node downloads on its own budget: one app at a time
        with self._lock:
            busy, node.downloading = node.downloading, True
        if busy:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "this node fetches an app already")
        try:
            yield from self._send_app(node, str(frame.header.get("digest", "")), context)
        finally:
            node.downloading = False

    def _send_app(self, node: _Node, digest: str, context: grpc.ServicerContext) -> Iterator[bytes]:
        data = self.bundles(digest)
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no app bundle {digest[:12]} on this link")
            return
        log.info("node %d fetches app %s (%d bytes)", node.node_id, digest[:12], len(data))
        for chunk in chunk_frames(digest, [data], self.chunk_size):
            yield encode_frame(chunk)

    def _register(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        self._request_gate(context).enter(context)
        request = first_request(requests, context, self.hello_timeout_s)
        try:
            public_key = self._identify(context, REGISTER_METHOD, request)
            frame = decode_frame(request)
            if frame.kind != "register":
                raise WireError(f"expected a register frame, got {frame.kind!r}")
            node = self._admit(frame.header, public_key)
        except (AuthError, PermissionError) as err:
            log.warning("refused a registration from %s: %s", context.peer(), err)
            context.abort(_auth_code(err), str(err))
        except WireError as err:
            log.warning("refused a registration from %s: %s", context.peer(), err)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        reply = {
            "node_id": node.node_id,
            "token": node.token,
            "heartbeat_s": self.heartbeat_s,
            "chunk_size": self.chunk_size,  # the node sends chunks no larger than this
        }
        return encode_frame(Frame("registered", reply))

    def _admit(self, header: dict[str, Any], public_key: bytes | None) -> _Node:
        config = header.get("node_config", {})
        if not isinstance(config, dict) or not all(
            isinstance(v, (bool, int, float, str)) for v in config.values()
        ):
            raise WireError("node_config must map names to bool, int, float or str")
        size = len(json.dumps(config))
        if size > MAX_NODE_CONFIG_SIZE:
            raise WireError(f"node_config is {size} bytes of JSON, more than the 16 KiB allowed")
        with self._lock:
            known = self._nodes.get(header.get("node_id", -1))
            if (
                known is not None
                and _same_token(known.token, header.get("token", ""))
                and known.public_key == public_key
            ):
                known.node_config, known.last_seen = config, time.monotonic()
                log.info("node %d registered again", known.node_id)
                return known
            if public_key is not None:  # one node per key: the key's holder gets its node back
                owned = next((n for n in self._nodes.values() if n.public_key == public_key), None)
                if owned is not None:
                    owned.node_config, owned.last_seen = config, time.monotonic()
                    log.info("node %d registered again with its key", owned.node_id)
                    return owned
            forgotten = self._make_room()
            node_id = _new_node_id(self._nodes, public_key)
            node = _Node(node_id, secrets.token_hex(16), config, public_key)
            self._nodes[node_id] = node
            self._stats.add(node_id)
        # The database is written with the lock released: its fsync holds up no other call.
        self._unstore(forgotten)
        if self._store is not None:
            try:
                self._store.save_node(node_id, node.token, public_key, config)
            except StorageError as err:  # the node works; only a restart forgets it
                log.warning("node %d is admitted but not stored: %s", node_id, err)
        log.info("node %d registered with node config %s", node_id, json.dumps(config))
        return node

    def _make_room(self) -> list[int]:
        """With too many registrations not connected, forget the one seen longest ago.

        So a flood of registrations pushes out its own entries, not the next node. Called
        with the lock held; returns the ids forgotten, for ``_unstore`` once it is released.
        """
        idle = [n for n in self._nodes.values() if not n.connected and not self._kept(n)]
        if len(idle) < IDLE_PER_NODE * self.max_nodes:
            return []
        oldest = min(idle, key=lambda n: n.last_seen)
        self._crowded.add(
            f"forgot a registration to make room: {len(idle)} are not connected "
            "(--node-keys admits known nodes only)"
        )
        return self._forget([oldest])

    def _kept(self, node: _Node) -> bool:
        """Whether a registration is never forgotten: its key is on the link's list."""
        key = node.public_key
        if key is None:
            return False
        if self._clients is not None:
            return self._clients.listed(key)
        return self._verifier is not None and self._verifier.lists(key)

    def _forget(self, nodes: list[_Node]) -> list[int]:
        """Drop registrations from memory (with the lock held); their ids, for ``_unstore``."""
        for node in nodes:
            del self._nodes[node.node_id]
        forgotten = [node.node_id for node in nodes]
        self._stats.forget(forgotten)
        return forgotten

    def _unstore(self, node_ids: list[int]) -> None:
        """Drop forgotten registrations from the database (with the lock released)."""
        if self._store is not None and node_ids:
            try:
                self._store.forget_nodes(node_ids)
            except StorageError as err:  # a restart reloads them; they expire again
                log.warning("forgotten registrations stay in the database: %s", err)

    def _channel(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        hello = _metadata(context, HELLO_KEY)
        try:
            peer = self._peer(context)
            if hello is None:
                opened = self._hello_in_stream(requests, context, peer)
                if opened is None:
                    return
                signer, frame = opened
            else:
                signer, frame = self._hello_in_metadata(hello, context, peer)
        except (AuthError, PermissionError) as err:
            log.warning("refused a stream from %s: %s", context.peer(), err)
            context.abort(_auth_code(err), str(err))
            return
        except WireError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"expected a hello frame: {err}")
            return
        node = self._node_for(frame)
        if node is None or node.public_key != signer:
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "unknown node id or wrong token: register first (Fleet/Register)",
            )
            return  # abort raises; this keeps the type checker informed
        with self._lock:
            if not node.connected and self._connected >= self.max_nodes:
                why = f"{self.max_nodes} nodes are connected, the link's limit (--max-nodes)"
                self._full.add(f"refused a node: {why}")
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{why}; retry later")
            stream, outbox = self._connect(node)
            node.cert = peer
        context.send_initial_metadata(((WELCOME_KEY, "1"),))  # the node stops backing off
        context.add_callback(lambda: outbox.put(_CLOSE))  # a cancelled RPC wakes its generator
        log.info("node %d connected (%s)", node.node_id, context.peer())
        reader = threading.Thread(
            target=self._read,
            args=(node, requests, outbox, peer),
            name=f"link-node-{node.node_id}",
            daemon=True,
        )
        reader.start()
        try:
            while True:
                item = outbox.get()
                if item.end:
                    if item.end == "bye":
                        yield encode_frame(Frame("bye"))
                    if item.end == "refused":
                        context.abort(item.header["code"], item.header["reason"])
                    return
                if self._awaited(item.message_id):
                    for frame in chunk_frames(
                        item.message_id, item.parts, self.chunk_size, item.header
                    ):
                        yield encode_frame(frame)
                item = _CLOSE  # hold no reference to the message between rounds
        finally:
            self._lose(node, stream, "its stream ended")

    def _awaited(self, message_id: str) -> bool:
        """Whether the run still waits for ``message_id``'s reply: else it is not sent.

        A message abandoned (FedBuff's deadline) or left by a run that ended may still sit
        in its node's outbox; the node would compute a reply nobody reads.
        """
        grid = self._grid
        return grid is not None and grid.waits_for(message_id)

    def _connect(self, node: _Node) -> tuple[int, queue.SimpleQueue[_Outgoing]]:
        """Make ``node``'s new stream its current one (with the lock held)."""
        if node.connected:  # a reconnect before the link saw the old stream end
            node.outbox.put(_CLOSE)
            if self._grid is not None:
                self._grid.node_lost(node.node_id, "it reconnected; its old stream is gone")
        else:
            self._connected += 1
        node.stream += 1
        node.connected = True
        node.last_seen, node.heard_at = time.monotonic(), time.time()
        node.outbox = queue.SimpleQueue()
        return node.stream, node.outbox

    def _hello_in_metadata(
        self, hello: bytes, context: grpc.ServicerContext, peer: Peer | None
    ) -> tuple[bytes | None, Frame]:
        """The hello a node put in the call's metadata, and whose it is."""
        signer = None if peer is None else peer.spki
        if self._verifier is not None:
            metadata = context.invocation_metadata()
            signer = self._verifier.verify_metadata(CHANNEL_METHOD, body_digest(hello), metadata)
        return signer, decode_frame(hello)

    def _hello_in_stream(
        self, requests: Iterator[bytes], context: grpc.ServicerContext, peer: Peer | None
    ) -> tuple[bytes | None, Frame] | None:
        """The stream's first frame, its hello, within ``hello_timeout_s`` (None: none came).

        Such streams wait on a small budget of their own, so streams that never say
        hello cannot keep out the nodes that do.
        """
        place = self._unauthenticated.enter(context)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            context.cancel()

        deadline = threading.Timer(self.hello_timeout_s, expire)
        deadline.start()
        try:
            return self._open(next(requests), peer)
        except (StopIteration, grpc.RpcError) as err:
            if expired.is_set():  # a cancelled stream ends either way
                log.warning(
                    "dropped a stream from %s: no hello within %g s",
                    context.peer(),
                    self.hello_timeout_s,
                )
            elif isinstance(err, StopIteration):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected a hello frame")
            return None  # else the node went away before saying hello
        finally:
            deadline.cancel()
            place.leave()

    def _open(self, data: bytes, peer: Peer | None) -> tuple[bytes | None, Frame]:
        """The frame in ``data`` and whose it is (None on a link without node identity).

        Whose: the key of the stream's certificate, or of the frame's signature.
        """
        if self._verifier is None:  # a node with a key may join a link that checks none
            frame = decode_frame(data)
            inner = decode_frame(bytes(frame.payload)) if frame.kind == "signed" else frame
            return None if peer is None else peer.spki, inner
        return unseal(self._verifier, CHANNEL_METHOD, data)

    def _node_for(self, hello: Frame) -> _Node | None:
        node_id = hello.header.get("node_id")
        if hello.kind != "hello" or type(node_id) is not int:
            return None
        with self._lock:
            node = self._nodes.get(node_id)
        token = str(hello.header.get("token", ""))
        return node if node is not None and _same_token(node.token, token) else None

    def _read(
        self,
        node: _Node,
        requests: Iterator[bytes],
        outbox: queue.SimpleQueue[_Outgoing],
        peer: Peer | None,
    ) -> None:
        """Read one node's frames: heartbeats, and the chunks of its replies."""
        assembler = Assembler(self.max_message_size, max_open=1)  # a node replies in turn
        coming = ""  # the message the reply being assembled answers
        try:
            for data in requests:
                node.last_seen, node.heard_at = time.monotonic(), time.time()
                signer, frame = self._open(data, peer)
                if signer != node.public_key:
                    raise AuthError(f"a frame on node {node.node_id}'s stream has another signer")
                if frame.kind == "heartbeat":
                    self._check_not_stalled(assembler, coming)
                    continue
                if frame.kind != "chunk":
                    raise WireError(f"unexpected {frame.kind!r} frame from a node")
                keep = frame.header.get("offset") != 0 or self._let_in(node, frame.header)
                if frame.header.get("offset") == 0 and keep:
                    coming = str(frame.header.get("reply_to"))
                done = assembler.add(frame, keep)
                if done is not None:
                    self._deliver(node, *done)
                    done = None  # free the reply's buffer now, not at the next one
        except QuotaExceeded as err:
            log.warning("refused node %d's reply: %s", node.node_id, err)
            code = grpc.StatusCode.RESOURCE_EXHAUSTED
            outbox.put(_Outgoing(end="refused", header={"code": code, "reason": str(err)}))
        except (AuthError, WireError) as err:
            log.warning("dropping node %d's stream: %s", node.node_id, err)
            code = (
                grpc.StatusCode.UNAUTHENTICATED
                if isinstance(err, AuthError)
                else grpc.StatusCode.INVALID_ARGUMENT
            )
            outbox.put(_Outgoing(end="refused", header={"code": code, "reason": str(err)}))
        except grpc.RpcError:
            pass  # the stream ended under us; _lose says so
        finally:
            outbox.put(_CLOSE)  # the node's side ended: end this stream's side too

    def _check_not_stalled(self, assembler: Assembler, coming: str) -> None:
        """Drop a node that pauses a reply whose message was answered (timed out, lost)."""
        grid = self._grid
        if assembler.pending_bytes() and (grid is None or not grid.waits_for(coming)):
            raise WireError(f"its reply to {coming!r} stalled after its message was answered")

    def _let_in(self, node: _Node, header: dict[str, Any]) -> bool:
        """Whether the reply ``header`` begins may come in (once it is its turn).

        False: nothing waits for it, so its chunks are dropped unread. Decided from the
        first chunk's header, before the Assembler sets any memory aside.
        """
        total, reply_to = header.get("total"), header.get("reply_to")
        if type(total) is not int or total < 0:
            return True  # the Assembler refuses it, saying why
        grid = self._grid
        if grid is None:  # late: the run ended (or was stopped) before this reply came
            log.info("dropped a reply from node %d: no run is going on", node.node_id)
            return False
        if not isinstance(reply_to, str):
            log.warning(
                "dropped a reply from node %d: its first chunk names no 'reply_to' message",
                node.node_id,
            )
            return False

        def keep_alive() -> None:
            node.last_seen = time.monotonic()

        return grid.let_in(
            node.node_id, reply_to, total, self.reply_limits, keep_alive, self.heartbeat_s
        )

    def _deliver(self, node: _Node, header: dict[str, Any], data: memoryview) -> None:
        """Hand a node's whole reply to the run; one that is not a message is INVALID_REPLY."""
        grid, reply_to = self._grid, str(header.get("reply_to"))
        if grid is None:  # the run ended while the reply came in
            log.info("dropped a reply from node %d: no run is going on", node.node_id)
            return
        try:
            reply = decode(data)
        except WireError as err:
            log.warning("node %d sent a reply that is not a valid message: %s", node.node_id, err)
            grid.refuse_reply(node.node_id, reply_to, f"the reply is not a valid message: {err}")
            return
        grid.take_reply(node.node_id, reply_to, reply)

    def _lose(self, node: _Node, stream: int, why: str) -> None:
        with self._lock:
            if node.stream != stream or not node.connected:
                return
            node.connected = False
            self._connected -= 1
            node.last_seen = time.monotonic()  # its registration expires from now
            grid = self._grid
        log.info("node %d disconnected: %s", node.node_id, why)
        if grid is not None:
            grid.node_lost(node.node_id, why)

    def _drop_revoked(self, nodes: list[_Node]) -> None:
        """End the streams of nodes whose certificate was revoked or expired since they came."""
        for node in nodes:
            cert, outbox = node.cert, node.outbox
            if cert is None or self._clients is None:
                continue
            try:
                self._clients.check_valid(cert)
            except AuthError as err:
                node.cert = None  # said once; a new stream brings its certificate again
                log.warning("dropping node %d's stream: %s", node.node_id, err)
                code = grpc.StatusCode.UNAUTHENTICATED
                outbox.put(_Outgoing(end="refused", header={"code": code, "reason": str(err)}))

    def _watch(self) -> None:
        """Every second, drop nodes whose heartbeats stopped (a stalled or paused process).

        And forget registrations that were not connected for ``registration_expiry_s``, and
        end the streams of nodes whose client certificate was revoked or expired meanwhile.
        """
        while not self._stopping.wait(1.0):
            now = time.monotonic()
            with self._lock:
                expired = [
                    n
                    for n in self._nodes.values()
                    if not n.connected
                    and now - n.last_seen > self.registration_expiry_s
                    and not self._kept(n)
                ]
                forgotten = self._forget(expired)
                silent = [
                    (n, n.stream, n.outbox)
                    for n in self._nodes.values()
                    if n.connected and now - n.last_seen > self.node_timeout_s
                ]
                certified = [n for n in self._nodes.values() if n.connected and n.cert]
            self._unstore(forgotten)
            self._drop_revoked(certified)
            for node, stream, outbox in silent:
                log.warning(
                    "node %d sent nothing for %.0f s: treating it as lost",
                    node.node_id,
                    self.node_timeout_s,
                )
                self._lose(node, stream, "heartbeats stopped")
                outbox.put(_CLOSE)
            if expired:
                log.info(
                    "forgot %d registration(s) not connected for %g s",
                    len(expired),
                    self.registration_expiry_s,
                )


def _auth_code(err: Exception) -> grpc.StatusCode:
    """UNAUTHENTICATED for an unknown caller, PERMISSION_DENIED for one in the wrong role."""
    if isinstance(err, PermissionError):
        return grpc.StatusCode.PERMISSION_DENIED
    return grpc.StatusCode.UNAUTHENTICATED


def _new_node_id(nodes: Mapping[int, _Node], public_key: bytes | None) -> int:
    """A fresh node id: derived from the node's key when it has one, else random.

    Strategies fold replies in node-id order, so ids that stay the same from run to run
    (keys) make a deployment's aggregates reproducible to the last bit.
    """
    if public_key is not None:
        node_id = int.from_bytes(hashlib.sha256(public_key).digest()[:8], "big") >> 11
        if node_id not in nodes and node_id != SERVER_NODE_ID:
            return node_id
    while True:
        node_id = secrets.randbits(53) or 1
        if node_id not in nodes and node_id != SERVER_NODE_ID:
            return node_id


def _same_token(token: str, claimed: object) -> bool:
    """Whether ``claimed`` is ``token``, in constant time; any text may be claimed."""
    return secrets.compare_digest(token.encode(), str(claimed).encode("utf-8", "replace"))


def _metadata(context: grpc.ServicerContext, key: str) -> bytes | None:
    """A call's binary metadata value for ``key`` (None if absent or not bytes)."""
    value = next((v for k, v in context.invocation_metadata() if k == key), None)
    return value if isinstance(value, bytes) else None
