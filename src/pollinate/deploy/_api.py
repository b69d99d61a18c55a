"""The classic script style: ``start_server`` in ``server.py``, ``start_client`` in ``client.py``.

TLS is on unless a script says ``insecure=True``: the server needs the certificate folder
``pollinate certs`` writes, each client the CA certificate that signed it. With ``mtls=True``
(or ``node_certs``) the server admits only clients with a certificate from that CA, and each
client gives its own (``cert`` and ``key``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import grpc

from ..client import ClientApp, NumPyClient
from ..context import Context, UserConfigValue
from ..errors import ConfigError
from ..records import ArrayRecord
from ..server import Result, RunObserver, ServerApp
from ..server._progress import RunProgress
from ..strategy import EvaluateFn, Strategy, one_server_app
from ._certs import CA_CERT, channel_credentials
from ._control import ControlService
from ._frames import DEFAULT_CHUNK_SIZE
from ._identity import NodeKey, Verifier, load_public_keys
from ._link import DEFAULT_BYTES_IN_FLIGHT, DEFAULT_MAX_NODES, DEFAULT_NODE_BYTES_IN_FLIGHT, Link
from ._node import Backoff, NodeSession, run_node
from ._peers import ClientCerts, ServerTLS
from ._runs import MAX_CRASHES, MAX_IDLE_S, Runs
from ._store import Store

__all__ = ["serve_link", "start_client", "start_server"]

log = logging.getLogger("pollinate.deploy")

DEFAULT_ADDRESS = "0.0.0.0:9400"


def start_server(
    address: str = DEFAULT_ADDRESS,
    *,
    server_app: ServerApp | None = None,
    strategy: Strategy | None = None,
    num_rounds: int | None = None,
    initial_arrays: ArrayRecord | None = None,
    evaluate_fn: EvaluateFn | None = None,
    run_config: Mapping[str, UserConfigValue] | None = None,
    certs: str | Path | None = None,
    insecure: bool = False,
    min_nodes: int = 1,
    wait_s: float = 300.0,
    out_dir: str | Path | None = None,
    observers: Sequence[RunObserver] = (),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_listening: Callable[[int], None] | None = None,
    require_signatures: bool = False,
    registered_keys: str | Path | None = None,
    db: str | Path | None = None,
    run_name: str = "run",
    mtls: bool = False,
    node_certs: str | Path | Sequence[str | Path] | None = None,
    revoked: str | Path | None = None,
    verbose: bool = True,
) -> Result:
    """Serve one run to the nodes that connect at ``address``, and return its history.

    Give a ``server_app``, or (classic) a ``strategy`` and ``num_rounds``. The run starts once
    ``min_nodes`` nodes are connected (waiting up to ``wait_s``); afterwards the nodes are
    told goodbye. ``certs`` is the folder with ``server.pem`` and ``server.key``;
    ``on_listening(port)`` is called once the link listens (useful with port 0).
    ``mtls``, ``node_certs`` and ``revoked`` admit nodes by their client certificates (see
    ``serve_link``). ``require_signatures`` makes every node sign with its key instead;
    ``registered_keys`` (a folder of ``*.pub`` files, or one file) admits only those keys.
    With ``db`` (an SQLite file) nodes keep their ids across restarts, and an unfinished
    run called ``run_name`` resumes after its last completed round. While it runs,
    ``pollinate ls`` and ``pollinate log`` on this machine show it. With ``verbose`` (the
    default) each round is shown on stderr as it finishes, and a summary at the end.
    """
    app = one_server_app(server_app, strategy, num_rounds, initial_arrays, evaluate_fn)
    waiting = f"waiting for {min_nodes} node{'s' * (min_nodes != 1)}"
    with (
        RunProgress(verbose, waiting) as shown,
        serve_link(
            address,
            certs=certs,
            insecure=insecure,
            chunk_size=chunk_size,
            require_signatures=require_signatures,
            registered_keys=registered_keys,
            db=db,
            on_listening=on_listening,
            mtls=mtls,
            node_certs=node_certs,
            revoked=revoked,
        ) as runs,
    ):
        run_id = runs.submit(
            run_name,
            dict(run_config or {}),
            server_app=app,
            min_nodes=min_nodes,
            wait_s=wait_s,
            out_dir=None if out_dir is None else Path(out_dir),
            observers=[*observers, *shown.observers],
            resume=db is not None,
        )
        runs.start()
        return shown.finished(runs.wait(run_id))


@contextlib.contextmanager
def serve_link(
    address: str = DEFAULT_ADDRESS,
    *,
    certs: str | Path | None = None,
    insecure: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    require_signatures: bool = False,
    registered_keys: str | Path | None = None,
    control_keys: str | Path | None = None,
    db: str | Path | None = None,
    runs_dir: Path | None = None,
    on_listening: Callable[[int], None] | None = None,
    max_crashes: int = MAX_CRASHES,
    max_idle_s: float = MAX_IDLE_S,
    max_nodes: int = DEFAULT_MAX_NODES,
    registration_expiry_s: float = 600.0,
    max_node_bytes_in_flight: int = DEFAULT_NODE_BYTES_IN_FLIGHT,
    max_bytes_in_flight: int = DEFAULT_BYTES_IN_FLIGHT,
    mtls: bool = False,
    node_certs: str | Path | Sequence[str | Path] | None = None,
    revoked: str | Path | None = None,
) -> Iterator[Runs]:
    """A listening link with its Fleet and Control services; yields its ``Runs``.

    Submit runs to it, then call ``start``. On exit the runs stop (an unfinished one stays
    unfinished in ``db``, to resume), the nodes are told goodbye and the link stops.
    ``runs_dir`` holds the folders of runs that name none (None: such runs keep no files).
    With ``mtls`` every caller must present a client certificate that ``certs/ca.pem``
    signed: nodes a node certificate (only those in ``node_certs``, files or folders of
    ``*.pem``, if given; it implies ``mtls``), Control callers an operator certificate, and
    none that the CRL file ``revoked`` lists (re-read when it changes). The link re-reads
    its own certificate and key, and the CA, when their files change (rotation). Without
    ``mtls``, ``control_keys`` admits operators' signed Control requests from anywhere;
    without either the Control service answers requests from this machine only. A submitted run's
    ServerApp runs in its own process: one that sends the link nothing for ``max_idle_s``
    fails its run, and a run that was going on the last ``max_crashes`` times the link went
    down fails instead of resuming again. At most ``max_nodes`` nodes are connected at once;
    registrations not connected for ``registration_expiry_s`` are forgotten. The nodes' replies
    the link holds may take ``max_node_bytes_in_flight`` bytes per node and
    ``max_bytes_in_flight`` in all (see ``Link``).
    """
    mtls = mtls or node_certs is not None
    if mtls and (control_keys is not None or require_signatures or registered_keys is not None):
        raise ConfigError(
            "choose one kind of identity: client certificates (--mtls, --node-certs) or "
            "signing keys (--node-keys, --require-signatures, --control-keys)"
        )
    credentials, clients = _server_tls(certs, insecure, mtls, node_certs, revoked)
    verifier = None
    if registered_keys is not None:
        verifier = Verifier(registered=load_public_keys(registered_keys))
    elif require_signatures:
        verifier = Verifier()
    operators = None
    if control_keys is not None:
        operators = Verifier(registered=load_public_keys(control_keys))
    store = Store(db) if db is not None else None
    try:
        link = Link(
            address,
            credentials=credentials,
            chunk_size=chunk_size,
            verifier=verifier,
            clients=clients,
            store=store,
            max_nodes=max_nodes,
            registration_expiry_s=registration_expiry_s,
            max_node_bytes_in_flight=max_node_bytes_in_flight,
            max_bytes_in_flight=max_bytes_in_flight,
        )
        runs = Runs(link, runs_dir, store, max_crashes=max_crashes, max_idle_s=max_idle_s)
        control = ControlService(runs, operators, clients, link.node_status)
        link.add_service(control.handler(), control.screen)
        port = link.start()
        try:
            if on_listening is not None:
                on_listening(port)
            yield runs
        finally:
            runs.close()
            link.stop()
    finally:
        if store is not None:
            store.close()


def start_client(
    address: str,
    client: ClientApp | NumPyClient | Callable[[Context], NumPyClient],
    *,
    node_config: Mapping[str, UserConfigValue] | None = None,
    root_cert: str | Path | None = None,
    insecure: bool = False,
    give_up_s: float | None = 300.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    key: str | Path | NodeKey | None = None,
    cert: str | Path | None = None,
) -> NodeSession:
    """Connect to the server at ``address`` and answer its messages until it says goodbye.

    ``client`` is a ClientApp, a NumPyClient, or a ``client_fn(context)`` making one.
    ``root_cert`` is the CA certificate (``ca.pem``) that signed the server's certificate.
    A server that is not up yet, or goes away, is retried with backoff for ``give_up_s``.
    ``cert`` and ``key`` (``nodeN.pem`` and ``nodeN.key`` from ``pollinate certs --nodes
    N``) are the node's client certificate, for a server with ``mtls``. Without ``cert``,
    ``key`` is an Ed25519 signing key (``pollinate certs --signing-keys``) that signs
    everything the node sends.
    """
    app = _client_app(client)
    if insecure == (root_cert is not None):
        raise ConfigError(
            "give root_cert (the CA certificate, e.g. certs/ca.pem from pollinate certs) for "
            "TLS, or insecure=True for plain text on a trusted network, not both"
        )
    signing = key if isinstance(key, NodeKey) else None
    pair: tuple[Path, Path] | tuple[()] = ()
    if cert is not None:
        if not isinstance(key, (str, Path)) or root_cert is None:
            raise ConfigError(
                "a client certificate goes with its key file and TLS: give cert=, key= "
                "(e.g. node1.pem and node1.key from pollinate certs) and root_cert="
            )
        pair = (Path(cert), Path(key))
    elif isinstance(key, (str, Path)):
        signing = NodeKey.load(key)
    credentials = None if root_cert is None else channel_credentials(Path(root_cert), *pair)
    return run_node(
        address,
        app,
        node_config=node_config,
        credentials=credentials,
        chunk_size=chunk_size,
        backoff=Backoff(give_up_s=give_up_s),
        key=signing,
    )


def _server_tls(
    certs: str | Path | None,
    insecure: bool,
    mtls: bool,
    node_certs: str | Path | Sequence[str | Path] | None,
    revoked: str | Path | None,
) -> tuple[grpc.ServerCredentials | None, ClientCerts | None]:
    """The link's TLS credentials (rotating), and what it checks of client certificates."""
    if insecure == (certs is not None):
        raise ConfigError(
            "give certs (a folder with server.pem and server.key; pollinate certs --out DIR "
            "makes one) for TLS, or insecure=True for plain text on a trusted network, not both"
        )
    if certs is None:
        if mtls or revoked is not None:
            raise ConfigError("mutual TLS (--mtls, --node-certs, --revoked) needs --certs")
        return None, None
    if revoked is not None and not mtls:
        raise ConfigError("--revoked goes with --mtls: it lists revoked client certificates")
    folder = Path(certs)
    if not mtls:
        return ServerTLS(folder).credentials(), None
    listed = None
    if node_certs is not None:
        sources = [node_certs] if isinstance(node_certs, (str, Path)) else node_certs
        listed = [Path(source) for source in sources]
    ca = folder / CA_CERT
    clients = ClientCerts(ca, listed, None if revoked is None else Path(revoked))
    return ServerTLS(folder, ca).credentials(), clients


def _client_app(client: ClientApp | NumPyClient | Callable[[Context], NumPyClient]) -> ClientApp:
    if isinstance(client, ClientApp):
        return client
    if isinstance(client, NumPyClient):
        return ClientApp(client_fn=lambda context: client)
    if callable(client):
        return ClientApp(client_fn=client)
    raise ConfigError(
        f"client must be a ClientApp, a NumPyClient or a client_fn, got {type(client).__name__}"
    )
