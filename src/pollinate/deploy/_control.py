"""The Control service: how ``pollinate run / ls / log / stop`` talk to a link.

``pollinate.v1.Control`` has five raw-bytes methods (frames from ``_frames``):

- ``SubmitRun`` (streamed request): the app's bundle in ``chunk`` frames, the first of which
  says the run's name, run config, app components and how many nodes to wait for.
- ``ListRuns``: every run the link knows, with its status and completed rounds.
- ``ListNodes``: every node the link knows: connected or not, last heard, its tasks and
  recent failures (``NodeStatus``).
- ``StreamLogs`` (streamed answer): a run's log lines, and with ``follow`` the new ones
  as they come, until the run ends.
- ``StopRun``: a queued run never starts; a running one ends at its next message.

Who may call it: on a link with client certificates (``--mtls``) a caller whose certificate
is an operator's (SAN URI ``pollinate:operator:NAME``), from any host; with operator keys
(``--control-keys``) every request must be signed by one of them, from any host; without
either, the link answers requests from its own machine only.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc

from ..context import UserConfigValue
from ..errors import AuthError, Forbidden, PollinateError, StorageError, WireError
from ._admission import Gate
from ._bundle import MAX_BUNDLE_SIZE, AppBundle, check_bundle
from ._frames import (
    DEFAULT_CHUNK_SIZE,
    Frame,
    assemble_one,
    chunk_frames,
    decode_frame,
    encode_frame,
    frame_limit,
)
from ._identity import NodeKey, Signature, Verifier, body_digest, signed_metadata
from ._nodestats import NodeStatus, json_count, json_number, json_object
from ._peers import ClientCerts
from ._rpc import rpc_errors
from ._runs import Runs
from ._store import AppRef, RunRow

__all__ = ["ControlClient", "ControlService", "RunSummary", "Submission"]

log = logging.getLogger("pollinate.link")

SERVICE = "pollinate.v1.Control"
SUBMIT_METHOD = f"/{SERVICE}/SubmitRun"
LIST_METHOD = f"/{SERVICE}/ListRuns"
NODES_METHOD = f"/{SERVICE}/ListNodes"
LOGS_METHOD = f"/{SERVICE}/StreamLogs"
STOP_METHOD = f"/{SERVICE}/StopRun"
MAX_UPLOADS = 4
"""Submissions uploading at once: more are refused, so uploads never crowd out the nodes."""
MAX_FOLLOWERS = 8
"""``pollinate log --follow`` streams at once: half the Control calls the link keeps, so
followers never take the places of ``ls``, ``stop`` and ``run``."""
UPLOAD_TIMEOUT_S = 600.0
MAX_LIST_SIZE = 1 << 30
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Submission:
    """A run to submit: the app's name, bundle and components, its config, nodes to wait for."""

    name: str
    bundle: AppBundle
    serverapp: str
    clientapp: str
    run_config: dict[str, UserConfigValue]
    min_nodes: int = 1
    wait_s: float = 300.0

    def header(self) -> dict[str, Any]:
        """What travels in the first chunk's header."""
        return {
            "name": self.name,
            "app": AppRef(self.bundle.digest, self.serverapp, self.clientapp).to_json(),
            "run_config": self.run_config,
            "min_nodes": self.min_nodes,
            "wait_s": self.wait_s,
        }


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run as ``pollinate ls`` shows it."""

    run_id: int
    name: str
    status: str
    rounds_done: int
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    error: str | None
    out_dir: str | None
    run_config: dict[str, UserConfigValue]

    @classmethod
    def of(cls, row: RunRow, rounds_done: int) -> RunSummary:
        """The summary of a link's run row."""
        return cls(
            row.run_id,
            row.name,
            row.status,
            rounds_done,
            row.submitted_at,
            row.started_at,
            row.ended_at,
            row.error,
            row.out_dir,
            row.run_config,
        )

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON (``pollinate ls --json`` prints these)."""
        return {
            "run_id": self.run_id,
            "name": self.name,
            "status": self.status,
            "rounds_done": self.rounds_done,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "error": self.error,
            "out_dir": self.out_dir,
            "run_config": self.run_config,
        }

    @classmethod
    def from_json(cls, payload: object) -> RunSummary:
        """The summary ``to_json`` wrote; a WireError if a field is missing or malformed.

        It comes from a link over the network: nothing in it is trusted.
        """
        item = json_object(payload, "a run summary")

        def optional(key: str, read: Callable[[object, str], T]) -> T | None:
            value = item.get(key)
            return None if value is None else read(value, f"a run summary's {key!r}")

        def text(value: object, what: str) -> str:
            if type(value) is not str:
                raise WireError(f"{what} must be a string, got {value!r:.80}")
            return value

        return cls(
            run_id=json_count(item.get("run_id"), "a run summary's 'run_id'"),
            name=text(item.get("name"), "a run summary's 'name'"),
            status=text(item.get("status"), "a run summary's 'status'"),
            rounds_done=json_count(item.get("rounds_done"), "a run summary's 'rounds_done'"),
            submitted_at=json_number(item.get("submitted_at"), "a run summary's 'submitted_at'"),
            started_at=optional("started_at", json_number),
            ended_at=optional("ended_at", json_number),
            error=optional("error", text),
            out_dir=optional("out_dir", text),
            run_config=json_object(item.get("run_config"), "a run summary's 'run_config'"),
        )


def _submission_digest(header: dict[str, Any], bundle: bytes | memoryview) -> bytes:
    """What a submission's signature covers: its header (canonical JSON) and its bundle."""
    return body_digest(json.dumps(header, sort_keys=True).encode(), bundle)


class ControlService:
    """The link's Control service over its ``Runs``.

    ``clients`` admits operators' certificates (mutual TLS); ``verifier`` operator keys.
    ``nodes`` says the link's nodes for ``ListNodes`` (``Link.node_status``; None: none).
    """

    def __init__(
        self,
        runs: Runs,
        verifier: Verifier | None = None,
        clients: ClientCerts | None = None,
        nodes: Callable[[], list[NodeStatus]] | None = None,
    ) -> None:
        self._runs = runs
        self._nodes = nodes
        self._verifier = verifier
        self._clients = clients
        self._uploads = threading.BoundedSemaphore(MAX_UPLOADS)
        self._followers = Gate(
            "log followers",
            MAX_FOLLOWERS,
            f"{MAX_FOLLOWERS} logs are followed already: the other Control calls keep their places",
        )

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handler to add to the link's server."""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "SubmitRun": grpc.stream_unary_rpc_method_handler(self._submit),
                "ListRuns": grpc.unary_stream_rpc_method_handler(self._list),
                "ListNodes": grpc.unary_stream_rpc_method_handler(self._list_nodes),
                "StreamLogs": grpc.unary_stream_rpc_method_handler(self._logs),
                "StopRun": grpc.unary_unary_rpc_method_handler(self._stop),
            },
        )

    def screen(self, context: grpc.ServicerContext) -> None:
        """Refuse a caller who may not control the link, before its call takes a place.

        The link keeps a few places for Control calls (``Link.add_service``): callers from
        elsewhere without an operator key must not be able to fill them.
        """
        try:
            self._caller(context, time.time())
        except _REFUSED as err:
            _refuse(context, "a Control call", err)

    def _caller(self, context: grpc.ServicerContext, received_at: float) -> Signature | None:
        """Who calls, checked before the body is read: operator certificate, key, or this machine.

        Without a certificate or key only this machine may call. The body's signature is
        checked once the body is in.
        """
        if self._clients is not None:
            self._clients.check(context, "operator")
            return None
        if self._verifier is not None:
            signature = Signature.from_metadata(context.invocation_metadata())
            self._verifier.precheck(signature, received_at)
            return signature
        if not _is_local(context.peer()):
            raise Forbidden(
                "this link takes Control requests from its own machine only: start it with "
                "--mtls to admit operators' certificates from elsewhere (or --control-keys "
                "for their signed requests)"
            )
        return None

    def _authorize(self, method: str, request: bytes, context: grpc.ServicerContext) -> None:
        """Check a unary request: its caller, and its signature over ``request``."""
        received_at = time.time()
        signature = self._caller(context, received_at)
        if signature is not None and self._verifier is not None:
            self._verifier.verify(method, body_digest(request), signature, received_at)

    def _submit(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        received_at = time.time()
        try:
            signature = self._caller(context, received_at)
        except _REFUSED as err:
            _refuse(context, "a submission", err)
        if not self._uploads.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{MAX_UPLOADS} submissions are uploading already: try again in a moment",
            )
        deadline = threading.Timer(UPLOAD_TIMEOUT_S, context.cancel)  # no stalled uploads
        deadline.start()
        try:
            header, data = _read_submission(requests)
            if signature is not None and self._verifier is not None:
                digest = _submission_digest(header, data)
                self._verifier.verify(SUBMIT_METHOD, digest, signature, received_at)
            run_id = self._runs.submit(**_submitted_run(header, data))
            log.info("run %d of %s submitted by %s", run_id, header.get("name"), context.peer())
            return _answer(self._runs, run_id)
        except _REFUSED as err:
            _refuse(context, "a submission", err)
        finally:
            deadline.cancel()
            self._uploads.release()

    def _list(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            self._authorize(LIST_METHOD, request, context)
        except _REFUSED as err:
            _refuse(context, "a list request", err)
        runs = [RunSummary.of(row, done).to_json() for row, done in self._runs.rows()]
        for chunk in chunk_frames("runs", [json.dumps(runs).encode()]):
            yield encode_frame(chunk)

    def _list_nodes(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            self._authorize(NODES_METHOD, request, context)
        except _REFUSED as err:
            _refuse(context, "a node list request", err)
        nodes = [n.to_json() for n in self._nodes()] if self._nodes is not None else []
        for chunk in chunk_frames("nodes", [json.dumps(nodes).encode()]):
            yield encode_frame(chunk)

    def _stop(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            self._authorize(STOP_METHOD, request, context)
            run_id = self._runs.find(str(decode_frame(request).header.get("run", "")))
        except _REFUSED as err:
            _refuse(context, "a stop request", err)
        self._runs.stop(run_id)
        log.warning("run %d stopped by %s", run_id, context.peer())
        return _answer(self._runs, run_id)

    def _logs(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            self._authorize(LOGS_METHOD, request, context)
            frame = decode_frame(request)
            run_id = self._runs.find(str(frame.header.get("run", "")))
        except _REFUSED as err:
            _refuse(context, "a log request", err)
        follow = bool(frame.header.get("follow", False))
        if follow:
            self._followers.enter(context)  # its place is given back when the call ends
        run_log, start = self._runs.log_of(run_id), 0
        while context.is_active():
            lines, ended = run_log.read(start, wait_s=1.0 if follow else 0.0)
            start += len(lines)
            for batch in _batches(lines):
                yield encode_frame(Frame("log", {}, json.dumps(batch).encode()))
            if ended or not follow:
                break
        yield _answer(self._runs, run_id, "end")


def _is_local(peer: str) -> bool:
    """Whether a gRPC peer (``ipv4:127.0.0.1:5000``, ``ipv6:%5B::1%5D:5000``) is this machine."""
    kind, _, rest = urllib.parse.unquote(peer).partition(":")
    if kind == "unix":
        return True
    try:
        address = ipaddress.ip_address(rest.rpartition(":")[0].strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _batches(lines: list[str], budget: int = 256 << 10) -> Iterator[list[str]]:
    """``lines`` in batches of about ``budget`` bytes, so any log fits the frames."""
    batch: list[str] = []
    size = 0
    for line in lines:
        line = line[:budget]  # one absurd line must not make a frame too large
        if batch and size + len(line) > budget:
            yield batch
            batch, size = [], 0
        batch.append(line)
        size += len(line) + 4
    if batch:
        yield batch


def _read_submission(requests: Iterator[bytes]) -> tuple[dict[str, Any], memoryview]:
    """The submission's header and bundle, from its chunks."""
    first, data = assemble_one(requests, MAX_BUNDLE_SIZE, "the submission")
    skip = ("message_id", "total", "offset")
    return {k: v for k, v in first.items() if k not in skip}, data


def _submitted_run(header: dict[str, Any], data: memoryview) -> dict[str, Any]:
    """``Runs.submit``'s arguments for a submission; WireError if the header is malformed."""
    bundle = AppBundle.of(bytes(data))
    check_bundle(bundle)  # refused now, not when the run starts
    app = AppRef.from_json(header.get("app"))
    if app.digest != bundle.digest:
        raise WireError("the app bundle does not match the digest it was sent with")
    name, run_config = header.get("name"), header.get("run_config")
    min_nodes, wait_s = header.get("min_nodes"), header.get("wait_s")
    if not isinstance(run_config, dict) or not isinstance(name, str):
        raise WireError("a submission needs a name and a run_config object")
    if (
        type(min_nodes) is not int
        or not isinstance(wait_s, (int, float))
        or isinstance(wait_s, bool)
    ):
        raise WireError("a submission needs an int min_nodes and a number wait_s")
    try:
        wait = float(wait_s)
    except OverflowError:
        raise WireError(f"wait_s {wait_s} is out of range") from None
    return {
        "name": name,
        "run_config": run_config,
        "bundle": bundle,
        "app": app,
        "min_nodes": min_nodes,
        "wait_s": wait,
    }


def _answer(runs: Runs, run_id: int, kind: str = "run") -> bytes:
    summary = RunSummary.of(runs.row(run_id), runs.rounds_done(run_id))
    return encode_frame(Frame(kind, summary.to_json()))


_REFUSED = (AuthError, PermissionError, LookupError, PollinateError)
_CODES = (
    (AuthError, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionError, grpc.StatusCode.PERMISSION_DENIED),
    (LookupError, grpc.StatusCode.NOT_FOUND),
    (StorageError, grpc.StatusCode.RESOURCE_EXHAUSTED),  # the link's disk, not the request
    (PollinateError, grpc.StatusCode.INVALID_ARGUMENT),
)


def _refuse(context: grpc.ServicerContext, what: str, err: Exception) -> NoReturn:
    """End the call with a status that says why (``abort`` raises), and log it."""
    message = str(err.args[0]) if isinstance(err, LookupError) and err.args else str(err)
    log.warning("refused %s from %s: %s", what, context.peer(), message)
    code = next(code for kind, code in _CODES if isinstance(err, kind))
    context.abort(code, message)
    raise err


class ControlClient:
    """Talks to a link's Control service: what ``pollinate run/ls/log/stop`` use.

    ``credentials`` verify the link's certificate (None: plain text) and, for a link with
    ``--mtls``, carry the operator's certificate; ``key`` signs every request (an operator
    key the link lists in ``--control-keys``).
    """

    def __init__(
        self,
        address: str,
        credentials: grpc.ChannelCredentials | None,
        key: NodeKey | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.address = address
        self._key = key
        self._chunk_size = chunk_size
        options = [("grpc.max_receive_message_length", frame_limit(chunk_size))]
        self._channel = (
            grpc.secure_channel(address, credentials, options)
            if credentials is not None
            else grpc.insecure_channel(address, options)
        )

    def close(self) -> None:
        """Close the connection."""
        self._channel.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def submit(self, submission: Submission) -> RunSummary:
        """Send the app and queue the run; the run as the link now sees it."""
        header = submission.header()
        data = submission.bundle.data
        frames = [encode_frame(f) for f in chunk_frames("submit", [data], self._chunk_size, header)]
        metadata = self._signed(SUBMIT_METHOD, _submission_digest(header, data))
        call = self._channel.stream_unary(SUBMIT_METHOD)
        with rpc_errors(self.address):
            return self._summary(call(iter(frames), metadata=metadata))

    def runs(self) -> list[RunSummary]:
        """Every run the link knows, oldest first."""
        request = encode_frame(Frame("list"))
        call = self._channel.unary_stream(LIST_METHOD)
        with rpc_errors(self.address):
            stream = call(request, metadata=self._sign(LIST_METHOD, request))
            _, data = assemble_one(stream, MAX_LIST_SIZE, "the link's list of runs")
        return [RunSummary.from_json(item) for item in json.loads(bytes(data))]

    def list_nodes(self) -> list[NodeStatus]:
        """Every node the link knows, by node id; WireError if the answer is malformed."""
        request = encode_frame(Frame("list_nodes"))
        call = self._channel.unary_stream(NODES_METHOD)
        with rpc_errors(self.address):
            stream = call(request, metadata=self._sign(NODES_METHOD, request))
            _, data = assemble_one(stream, MAX_LIST_SIZE, "the link's list of nodes")
        try:
            items = json.loads(bytes(data))
        except (ValueError, RecursionError) as err:
            raise WireError(f"the link's list of nodes is not JSON: {err}") from None
        if not isinstance(items, list):
            raise WireError("the link's list of nodes must be a JSON list")
        return [NodeStatus.from_json(item) for item in items]

    def stop(self, run: str) -> RunSummary:
        """Stop the run whose id is (or starts with) ``run``."""
        request = encode_frame(Frame("stop", {"run": run}))
        call = self._channel.unary_unary(STOP_METHOD)
        with rpc_errors(self.address):
            return self._summary(call(request, metadata=self._sign(STOP_METHOD, request)))

    def logs(self, run: str, follow: bool = False) -> Iterator[str | RunSummary]:
        """The run's log lines (new ones as they come with ``follow``), then the run itself."""
        request = encode_frame(Frame("logs", {"run": run, "follow": follow}))
        call = self._channel.unary_stream(LOGS_METHOD)
        with rpc_errors(self.address):
            stream = call(request, metadata=self._sign(LOGS_METHOD, request))
        try:
            with rpc_errors(self.address):
                for data in stream:
                    frame = decode_frame(data)
                    if frame.kind == "log":
                        yield from (str(line) for line in json.loads(bytes(frame.payload)))
                    elif frame.kind == "end":
                        yield RunSummary.from_json(frame.header)
        finally:
            stream.cancel()

    def _sign(self, method: str, request: bytes) -> Sequence[tuple[str, str | bytes]] | None:
        return self._signed(method, body_digest(request))

    def _signed(self, method: str, digest: bytes) -> Sequence[tuple[str, str | bytes]] | None:
        return signed_metadata(self._key, method, digest)

    def _summary(self, data: bytes) -> RunSummary:
        return RunSummary.from_json(decode_frame(data).header)
