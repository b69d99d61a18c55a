"""The classic script style: ``start_server`` in ``server.py``, ``start_client`` in ``client.py``.

TLS is on unless a script says ``insecure=True``: the server needs the certificate folder
``pollinate certs`` writes, each client the CA certificate that signed it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import grpc

from ..client import ClientApp, NumPyClient
from ..context import Context, UserConfigValue
from ..errors import ConfigError
from ..message import SERVER_NODE_ID
from ..records import ArrayRecord, RecordDict
from ..server import Result, ResumePoint, RunObserver, ServerApp, run_server_app
from ..strategy import EvaluateFn, Strategy, one_server_app
from ._certs import channel_credentials, server_credentials
from ._frames import DEFAULT_CHUNK_SIZE
from ._identity import NodeKey, Verifier, load_public_keys
from ._link import Link
from ._node import Backoff, NodeSession, run_node
from ._store import Store, StoreRecorder

__all__ = ["start_client", "start_server"]

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
) -> Result:
    """Serve one run to the nodes that connect at ``address``, and return its history.

    Give a ``server_app``, or (classic) a ``strategy`` and ``num_rounds``. The run starts once
    ``min_nodes`` nodes are connected (waiting up to ``wait_s``); afterwards the nodes are
    told goodbye. ``certs`` is the folder with ``server.pem`` and ``server.key``;
    ``on_listening(port)`` is called once the link listens (useful with port 0).
    ``require_signatures`` makes every node sign with its key; ``registered_keys`` (a folder
    of ``*.pub`` files, or one file) admits only those keys. With ``db`` (an SQLite file)
    nodes keep their ids across restarts, and an unfinished run called ``run_name`` resumes
    after its last completed round.
    """
    app = one_server_app(server_app, strategy, num_rounds, initial_arrays, evaluate_fn)
    credentials = _server_credentials(certs, insecure)
    verifier = None
    if registered_keys is not None:
        verifier = Verifier(registered=load_public_keys(registered_keys))
    elif require_signatures:
        verifier = Verifier()
    store = Store(db) if db is not None else None
    link = Link(
        address, credentials=credentials, chunk_size=chunk_size, verifier=verifier, store=store
    )
    port = link.start()
    if on_listening is not None:
        on_listening(port)
    try:
        config = dict(run_config or {})
        run_id, out, resume = secrets.randbits(63), out_dir, None
        watchers = list(observers)
        if store is not None:
            run_id, config, out, resume = _run_in_store(store, run_name, run_id, config, out_dir)
            watchers.append(StoreRecorder(store, run_id))
        grid = link.grid(run_id, config)
        log.info("waiting for %d node(s) on port %d", min_nodes, port)
        grid.wait_for_nodes(min_nodes, wait_s)
        context = Context(run_id, SERVER_NODE_ID, {}, config, RecordDict())
        try:
            result = run_server_app(
                app, grid, context, out_dir=out, observers=watchers, resume=resume
            )
        except Exception:
            if store is not None:
                store.finish_run(run_id, "failed")
            raise
        if store is not None:
            store.finish_run(run_id, "finished")
        return result
    finally:
        link.stop()
        if store is not None:
            store.close()


def _run_in_store(
    store: Store,
    name: str,
    run_id: int,
    config: dict[str, UserConfigValue],
    out_dir: str | Path | None,
) -> tuple[int, dict[str, UserConfigValue], str | Path | None, ResumePoint | None]:
    """The unfinished run called ``name`` to resume, else a new one recorded as running."""
    unfinished = store.unfinished_run(name)
    if unfinished is None:
        out = None if out_dir is None else str(Path(out_dir).resolve())
        store.start_run(run_id, name, config, out)
        return run_id, config, out_dir, None
    if unfinished.run_config != config:
        changed = sorted(
            k
            for k in {*config, *unfinished.run_config}
            if config.get(k) != unfinished.run_config.get(k)
        )
        raise ConfigError(
            f"{store.path} holds an unfinished run {name!r} with another run config "
            f"({', '.join(changed)} differ): give the same run config to resume it, or "
            "another database to start afresh"
        )
    resume = store.resume_point(unfinished.run_id)
    done = resume.last_round if resume else 0
    log.warning(
        "resuming run %d after round %d; results go to %s",
        unfinished.run_id,
        done,
        unfinished.out_dir,
    )
    return unfinished.run_id, unfinished.run_config, unfinished.out_dir, resume


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
) -> NodeSession:
    """Connect to the server at ``address`` and answer its messages until it says goodbye.

    ``client`` is a ClientApp, a NumPyClient, or a ``client_fn(context)`` making one.
    ``root_cert`` is the CA certificate (``ca.pem``) that signed the server's certificate.
    A server that is not up yet, or goes away, is retried with backoff for ``give_up_s``.
    ``key`` (a ``nodeN.key`` file from ``pollinate certs --nodes N``) signs what it sends.
    """
    app = _client_app(client)
    if insecure == (root_cert is not None):
        raise ConfigError(
            "give root_cert (the CA certificate, e.g. certs/ca.pem from pollinate certs) for "
            "TLS, or insecure=True for plain text on a trusted network, not both"
        )
    credentials = None if root_cert is None else channel_credentials(Path(root_cert))
    return run_node(
        address,
        app,
        node_config=node_config,
        credentials=credentials,
        chunk_size=chunk_size,
        backoff=Backoff(give_up_s=give_up_s),
        key=key if isinstance(key, NodeKey) or key is None else NodeKey.load(key),
    )


def _server_credentials(certs: str | Path | None, insecure: bool) -> grpc.ServerCredentials | None:
    if insecure == (certs is not None):
        raise ConfigError(
            "give certs (a folder with server.pem and server.key; pollinate certs --out DIR "
            "makes one) for TLS, or insecure=True for plain text on a trusted network, not both"
        )
    return None if certs is None else server_credentials(Path(certs))


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
