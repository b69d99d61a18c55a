"""A node: connects to a link, runs its ClientApp on the work pushed to it, pushes replies back.

The node registers (``Fleet/Register``), opens its ``Channel`` stream and then waits: the
link pushes messages in chunks, the node answers each with its ClientApp and sends a
heartbeat every period, from a thread of its own, so a long training step never looks like
a dead node. When the link goes away, or refuses the node for now (it is full), the node
reconnects with exponential backoff and jitter, under the same node id and with its state,
so it does not lose its place. A keyless node keeps its id and token in a file
(:class:`IdFile`), so a restarted node gets its id back instead of a new one. A TLS
handshake that fails is a setup problem, not an outage: the node says what to check, and
stops after ``max_handshake_failures`` in a row.

A node either has its own copy of the app (``pollinate node APP_DIR``, ``start_client``) or
none: then, for a run submitted with its app's bundle, it fetches the bundle from the link
(``Fleet/GetApp``), checks its SHA-256 digest, unpacks it into its cache and loads the
ClientApp from it. The link's TLS certificate is what makes the code trustworthy.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from ..client import ClientApp
from ..context import Context, UserConfigValue
from ..errors import ConfigError, PollinateError, WireError
from ..loader import load_object
from ..message import ErrorCode, Message
from ..records import RecordDict
from ..wire import decode, encode_parts
from ._bundle import MAX_BUNDLE_SIZE, AppBundle, unpack_app
from ._frames import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    Assembler,
    Frame,
    assemble_one,
    chunk_frames,
    decode_frame,
    encode_frame,
    frame_limit,
)
from ._identity import NodeKey, body_digest, signed_metadata
from ._link import (
    CHANNEL_METHOD,
    DEFAULT_MAX_MESSAGE_SIZE,
    GET_APP_METHOD,
    HELLO_KEY,
    REGISTER_METHOD,
    WELCOME_KEY,
)
from ._rpc import as_pollinate_error, status_of
from ._sealed import seal
from ._store import AppRef

__all__ = ["Backoff", "IdFile", "NodeSession", "run_node"]

DEFAULT_MAX_HANDSHAKE_FAILURES = 5
_REFUSALS = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
)
"""What the link answers a node it will not take as it is: retrying would not help."""

_Outgoing = bytes | Iterator[bytes] | None
"""What the node's send queue holds: a frame, a reply's frames (made lazily), or the end."""

log = logging.getLogger("pollinate.node")


@dataclass
class Backoff:
    """Exponential backoff with full jitter: waits grow to ``max_s``; ``give_up_s`` ends them.

    ``give_up_s`` None retries forever (a node daemon); a number is the longest time
    without a link before ``run_node`` gives up.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    give_up_s: float | None = None
    _attempt: int = 0
    _since: float | None = None

    def reset(self) -> None:
        """The link served us a while: start again from the shortest wait."""
        self._attempt, self._since = 0, None

    def answered(self) -> None:
        """The link admitted us: the time to give up counts afresh, the waits do not shrink.

        A link that ends each stream at once is then reached ever more slowly, not in a
        tight loop.
        """
        self._since = None

    def wait(self) -> bool:
        """Sleep before the next attempt; False once ``give_up_s`` has passed without a link."""
        now = time.monotonic()
        self._since = now if self._since is None else self._since
        if self.give_up_s is not None and now - self._since >= self.give_up_s:
            return False
        ceiling = min(self.max_s, self.initial_s * 2**self._attempt)
        self._attempt += 1
        time.sleep(random.uniform(0, ceiling))
        return True


@dataclass
class NodeSession:
    """What a node keeps across reconnects: its identity at the link and each run's state.

    ``client_app`` is the node's own app (None: it loads each run's app from its bundle,
    unpacked under ``app_cache``); ``app_name`` names its own app, so runs of other apps
    are refused.
    """

    node_config: dict[str, UserConfigValue]
    client_app: ClientApp | None = None
    app_name: str | None = None
    app_cache: Path | None = None
    node_id: int | None = None
    token: str | None = None
    states: dict[int, RecordDict] = field(default_factory=dict)
    apps: dict[str, ClientApp] = field(default_factory=dict)
    """Submitted apps loaded so far, by bundle digest."""


def _cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pollinate"


def default_app_cache() -> Path:
    """Where a node unpacks the apps it fetches: ``$XDG_CACHE_HOME/pollinate/apps``."""
    return _cache() / "apps"


class IdFile:
    """Where a keyless node keeps the id and token a link gave it, to reclaim them.

    A node that restarts registers with them and gets its id back, instead of leaving one
    registration behind per restart. The file is locked while the node runs, so two
    nodes never share an id: ``claim`` takes the first free file of a series.
    """

    def __init__(self, path: Path, address: str) -> None:
        """Open and lock ``path``; BlockingIOError if a running node holds it."""
        self.path = path
        self._address = address
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise ConfigError(f"cannot use the id file {path}: {err.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            raise

    @classmethod
    def claim(cls, base: Path, address: str) -> IdFile:
        """The first of ``base``, ``base-2``, ``base-3``... that no running node holds."""
        for n in range(1, 1000):
            path = base if n == 1 else base.with_name(f"{base.stem}-{n}{base.suffix}")
            try:
                return cls(path, address)
            except BlockingIOError:
                continue
        raise ConfigError(f"999 running nodes hold the id files {base}-N: give --id-file")

    @staticmethod
    def default_path(address: str, node_config: Mapping[str, UserConfigValue], app: str) -> Path:
        """One file per link, node config and app, under ``~/.cache/pollinate/nodes``."""
        what = json.dumps([address, dict(node_config), app], sort_keys=True).encode()
        return _cache() / "nodes" / f"{hashlib.sha256(what).hexdigest()[:16]}.json"

    def read(self) -> tuple[int, str] | None:
        """The node id and token kept for this link (None: none, or for another link)."""
        try:
            kept = json.loads(os.pread(self._fd, 4096, 0) or b"{}")
            if kept.get("link") == self._address:
                return int(kept["node_id"]), str(kept["token"])
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring the unreadable id file %s", self.path)
        return None

    def write(self, node_id: int, token: str) -> None:
        """Keep the id and token the link gave."""
        data = json.dumps({"link": self._address, "node_id": node_id, "token": token}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def close(self) -> None:
        """Let go of the file (and its lock)."""
        os.close(self._fd)


def run_node(
    address: str,
    client_app: ClientApp | None,
    *,
    node_config: Mapping[str, UserConfigValue] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    backoff: Backoff | None = None,
    until_bye: bool = True,
    key: NodeKey | None = None,
    app_name: str | None = None,
    app_cache: Path | None = None,
    id_file: IdFile | None = None,
    max_handshake_failures: int = DEFAULT_MAX_HANDSHAKE_FAILURES,
) -> NodeSession:
    """Serve ``client_app`` to the link at ``address`` until it says goodbye.

    With ``client_app`` None the node answers each submitted run with the run's own app,
    fetched from the link and unpacked under ``app_cache`` (``default_app_cache()``).
    ``app_name`` (the node's own app's name) makes the node refuse runs of other apps.

    ``credentials`` verify the link's TLS certificate (see ``channel_credentials``); None
    connects in plain text (only for ``--insecure``). With ``until_bye=False`` the node
    stays for the next run after a goodbye, as a node daemon does. A node's client
    certificate (mutual TLS) travels in ``credentials``; with a ``key`` the node signs its
    registration and every frame it sends instead (links with signing keys require it).
    With an ``id_file`` the node reclaims the id it had before a restart. A link that
    refuses the node for now (full, or not up) is retried with ``backoff``; after
    ``max_handshake_failures`` TLS handshakes in a row fail, the node gives up.
    """
    session = NodeSession(dict(node_config or {}), client_app, app_name, app_cache)
    if id_file is not None:
        session.node_id, session.token = id_file.read() or (None, None)
    backoff = backoff or Backoff()
    if credentials is None:
        log.warning(
            "plain text (--insecure): this node cannot tell the link from an impostor, and "
            "anyone on the network path can read its replies and send it work%s",
            "" if client_app is not None else " and code to run",
        )
    handshakes = 0
    limit = frame_limit(MAX_CHUNK_SIZE)  # whatever chunk size the link chose
    options = [
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
    ]
    while True:
        channel = (
            grpc.secure_channel(address, credentials, options)
            if credentials is not None
            else grpc.insecure_channel(address, options)
        )
        try:
            with channel:
                said_bye = _serve(
                    channel, session, chunk_size, max_message_size, backoff, key, id_file
                )
            handshakes = 0
        except WireError as err:
            handshakes = 0
            log.warning("the link at %s sent malformed data (%s); reconnecting", address, err)
            if not backoff.wait():
                raise ConfigError(f"the link at {address} keeps sending malformed data") from None
            continue
        except grpc.RpcError as err:
            code, details = status_of(err)
            if code in _REFUSALS:  # the link said no, and will again: say why and stop
                raise as_pollinate_error(err, address, " this node") from None
            tls = _tls_problem(address, details, credentials is not None)
            handshakes = handshakes + 1 if tls else 0
            if tls and handshakes >= max_handshake_failures:
                raise ConfigError(f"{tls}; {handshakes} times in a row, giving up") from None
            if tls:
                log.warning("%s; retrying", tls)
            elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                log.warning("the link at %s turned this node away: %s", address, details)
            else:
                log.warning(
                    "link at %s unavailable (%s); retrying", address, code.name if code else err
                )
            if not backoff.wait():
                raise ConfigError(
                    f"no link at {address} for {backoff.give_up_s:g} s: check the address, "
                    "that the link runs, and that a firewall lets the port through"
                ) from None
            continue
        if said_bye and until_bye:
            return session
        if not backoff.wait():  # a link that ends every stream at once must not make us spin
            raise ConfigError(f"the link at {address} keeps ending this node's stream") from None


def _tls_problem(address: str, details: str, tls: bool) -> str | None:
    """What a failed connection says about TLS set-up, if it is a TLS problem (else None)."""
    closed = "failed to connect" in details and "Socket closed" in details
    if not tls:  # a TLS link closes a plain-text connection at once (not a stream later)
        if not closed:
            return None
        return (
            f"the link at {address} closed the connection at once: it probably speaks TLS "
            "(give --root-cert, the federation's ca.pem, instead of --insecure)"
        )
    if closed:  # with TLS 1.3 a client learns only this when its certificate is refused
        return (
            f"the link at {address} closed the connection in the TLS handshake: it probably "
            "requires a client certificate (--mtls) and this node gave none, or one it does "
            "not accept (check --cert and --key: a node certificate that the federation's CA "
            "signed, and that has not expired)"
        )
    if "hostname verification" in details.lower():
        host = address.rpartition(":")[0]
        return (
            f"TLS handshake with {address} failed: the link's certificate does not name "
            f"{host} (dial the link by a name its certificate holds, or make its certificate "
            "again with this name: pollinate certs --hostname)"
        )
    if "handshake failed" not in details.lower():
        return None
    if "CERTIFICATE_VERIFY_FAILED" in details:
        why = (
            "the link's certificate is not signed by the CA this node trusts (check that "
            "--root-cert is the federation's ca.pem, the CA that signed the link's server.pem)"
        )
    elif "WRONG_VERSION_NUMBER" in details:
        why = "the link does not speak TLS (started with --insecure?)"
    else:
        why = (
            f"{details.rpartition('handshake failed')[2].strip(' :')} (check --root-cert, and "
            "that the link's certificate names the host in --link)"
        )
    return f"TLS handshake with {address} failed: {why}"


def _serve(
    channel: grpc.Channel,
    session: NodeSession,
    chunk_size: int,
    max_message_size: int,
    backoff: Backoff,
    key: NodeKey | None,
    id_file: IdFile | None,
) -> bool:
    """One connection: register, open the stream, answer until it ends; True after a bye."""
    register = channel.unary_unary(REGISTER_METHOD)
    header: dict[str, object] = {"node_config": session.node_config}
    if session.node_id is not None:
        header |= {"node_id": session.node_id, "token": session.token}
    request = encode_frame(Frame("register", header))
    metadata = signed_metadata(key, REGISTER_METHOD, body_digest(request))
    answer = decode_frame(register(request, metadata=metadata))
    try:
        session.node_id = int(answer.header["node_id"])
        session.token = str(answer.header["token"])
        heartbeat_s = float(answer.header["heartbeat_s"])
        chunk_size = min(chunk_size, int(answer.header.get("chunk_size", chunk_size)))
    except (KeyError, TypeError, ValueError) as err:
        raise WireError(f"the link's answer to Register lacks a valid {err}") from None
    if id_file is not None:
        id_file.write(session.node_id, session.token)
    log.info("registered as node %d", session.node_id)
    outgoing: queue.SimpleQueue[_Outgoing] = queue.SimpleQueue()
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(outgoing, heartbeat_s, stop), daemon=True)
    beat.start()
    # The hello travels in the call's metadata: the link admits the stream before reading it.
    hello = encode_frame(Frame("hello", {"node_id": session.node_id, "token": session.token}))
    hello_metadata = [
        (HELLO_KEY, hello),
        *(signed_metadata(key, CHANNEL_METHOD, body_digest(hello)) or []),
    ]
    stream = channel.stream_stream(CHANNEL_METHOD)(_drain(outgoing, key), metadata=hello_metadata)
    assembler = Assembler(max_message_size)
    opened = time.monotonic()
    try:
        if dict(stream.initial_metadata()).get(WELCOME_KEY):  # admitted, not turned away
            backoff.answered()
        for data in stream:
            frame = decode_frame(data)
            if frame.kind == "bye":
                log.info("the link said goodbye")
                return True
            if frame.kind != "chunk":
                raise WireError(f"unexpected {frame.kind!r} frame from the link")
            done = assembler.add(frame)
            if done is not None:
                first, buffer = done
                app = _app_for(channel, session, first, key)
                _answer(app, session, first, buffer, outgoing, chunk_size)
        return False
    finally:
        stop.set()
        outgoing.put(None)
        stream.cancel()
        if time.monotonic() - opened >= heartbeat_s:  # served a while: the link is healthy
            backoff.reset()


def _app_for(
    channel: grpc.Channel, session: NodeSession, header: dict[str, object], key: NodeKey | None
) -> ClientApp | str:
    """The ClientApp that answers a message, or why this node cannot answer it."""
    if "app" not in header:  # the link's run was handed over in process: nodes bring their own
        return session.client_app or (
            "this node has no app and the run sent none: start the node with the app's folder"
        )
    try:
        ref = AppRef.from_json(header["app"])
    except WireError as err:
        return str(err)
    if session.client_app is not None:
        name = header.get("name")
        if session.app_name is not None and name is not None and name != session.app_name:
            return f"this node serves the app {session.app_name!r}, not {name!r}"
        return session.client_app
    if ref.digest not in session.apps:
        try:
            bundle = AppBundle(_fetch_app(channel, session, ref.digest, key), ref.digest)
            folder = unpack_app(bundle, session.app_cache or default_app_cache())
            session.apps[ref.digest] = load_object(ref.clientapp, ClientApp, folder, fresh=True)
        except (PollinateError, OSError, grpc.RpcError) as err:
            log.warning("cannot load the run's app %s: %s", ref.digest[:12], err)
            return f"this node cannot load the run's app {ref.digest[:12]}: {err}"
        log.info("loaded app %s (%s)", ref.digest[:12], ref.clientapp)
    return session.apps[ref.digest]


def _fetch_app(
    channel: grpc.Channel, session: NodeSession, digest: str, key: NodeKey | None
) -> bytes:
    """The bundle with ``digest``, from the link, in chunks."""
    request = encode_frame(
        Frame("get_app", {"node_id": session.node_id, "token": session.token, "digest": digest})
    )
    metadata = signed_metadata(key, GET_APP_METHOD, body_digest(request))
    stream = channel.unary_stream(GET_APP_METHOD)(request, metadata=metadata)
    return bytes(assemble_one(stream, MAX_BUNDLE_SIZE, f"the app bundle {digest[:12]}")[1])


def _answer(
    app: ClientApp | str,
    session: NodeSession,
    first: dict[str, object],
    buffer: memoryview,
    outgoing: queue.SimpleQueue[_Outgoing],
    chunk_size: int,
) -> None:
    """Run the ClientApp on one message and queue its reply's chunks (an error if no app)."""
    message = decode(buffer)
    run_id = message.metadata.run_id
    run_config = first.get("run_config") or {}
    if not isinstance(run_config, dict):
        raise WireError("run_config must be a JSON object")
    assert session.node_id is not None
    state = session.states.setdefault(run_id, RecordDict())
    context = Context(run_id, session.node_id, dict(session.node_config), run_config, state)
    reply = _refused(message, app) if isinstance(app, str) else app(message, context)
    try:
        parts = encode_parts(reply)
    except WireError as err:  # the handler's reply, not the link: answer with why
        reply = message.reply_error(ErrorCode.INVALID_REPLY, f"the reply cannot be sent: {err}")
        parts = encode_parts(reply)
    header = {"reply_to": message.metadata.message_id}  # the link takes replies in turn
    frames = chunk_frames(reply.metadata.message_id, parts, chunk_size, header)
    outgoing.put(encode_frame(frame) for frame in frames)  # encoded as gRPC takes them


def _refused(message: Message, reason: str) -> Message:
    return message.reply_error(ErrorCode.CLIENT_APP_RAISED, reason)


def _heartbeat(
    outgoing: queue.SimpleQueue[_Outgoing], period_s: float, stop: threading.Event
) -> None:
    beat = encode_frame(Frame("heartbeat"))
    while not stop.wait(period_s):
        outgoing.put(beat)


def _drain(outgoing: queue.SimpleQueue[_Outgoing], key: NodeKey | None) -> Iterator[bytes]:
    """The frames to send, each signed as it leaves (so no timestamp goes stale in a queue)."""
    while (item := outgoing.get()) is not None:
        for data in [item] if isinstance(item, bytes) else item:
            yield seal(key, CHANNEL_METHOD, data) if key is not None else data
