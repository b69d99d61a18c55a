"""``pollinate link`` and ``pollinate node``: run apps over the network, unchanged.

``pollinate link`` serves the runs submitted to it (``pollinate link APP_DIR``: one run of
that app) to the nodes that connect; ``pollinate node --link HOST:PORT`` answers them from
each machine, with the run's own app or with ``APP_DIR``'s.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape

from ..client import ClientApp
from ..config import AppConfig, load_app_config, parse_overrides, resolve_run_config
from ..context import UserConfigValue
from ..errors import ConfigError
from ..loader import load_object
from ..server import Result, ServerApp
from ..server._progress import progress_view
from ._display import shown
from ._options import VERBOSE, out_option, run_config_option, timestamp, verbose_option
from ._progress import cli_logging

if TYPE_CHECKING:
    from ..deploy import Runs

__all__ = ["check_link_trust", "link_command", "node_command", "wait_for_interrupt"]

_INSECURE = click.option(
    "--insecure", is_flag=True, help="Plain text, no TLS: trusted networks only."
)


_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9}
_SIZE_UNITS |= {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}


def _size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """A number of bytes from ``8GiB``, ``512MiB``, ``2GB`` or plain bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([a-zA-Z]*)\s*", value)
    unit = _SIZE_UNITS.get(match[2].lower()) if match else None
    size = int(float(match[1]) * unit) if match and unit else 0
    if size < 1:
        raise click.BadParameter(f"{value!r} is not a size: give e.g. 8GiB, 512MiB or bytes")
    return size


@click.command("link", short_help="Serve runs to nodes over gRPC.")
@click.argument("app_dir", required=False, type=click.Path(path_type=Path))
@click.option("--address", default="0.0.0.0:9400", show_default=True, help="Where to listen.")
@click.option(
    "--certs",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder with server.pem and server.key, and with --mtls ca.pem (pollinate certs "
    "--out DIR makes one); changed files are read again, no restart.",
)
@_INSECURE
@click.option(
    "--mtls",
    is_flag=True,
    help="Mutual TLS: admit only callers with a client certificate that --certs/ca.pem "
    "signed: nodes with a node certificate, pollinate run/ls/log/stop with an operator's.",
)
@click.option(
    "--node-certs",
    type=click.Path(exists=True, path_type=Path),
    multiple=True,
    help="With --mtls (implied): admit only these node certificates (a folder of *.pem "
    "files, or one file; repeat for several).",
)
@click.option(
    "--revoked",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --mtls: a CRL (pollinate certs revoke writes DIR/revoked.crl); its "
    "certificates are refused, and the file is read again when it changes.",
)
@click.option(
    "--node-keys",
    type=click.Path(path_type=Path),
    help="Instead of --mtls: admit only nodes whose signing key is here (a folder of *.pub "
    "files, or one file).",
)
@click.option(
    "--require-signatures",
    is_flag=True,
    help="Instead of --mtls: every node must sign with its key.",
)
@click.option(
    "--control-keys",
    type=click.Path(path_type=Path),
    help="Instead of --mtls: operators' public keys (*.pub), whose signed pollinate "
    "run/ls/log/stop requests are admitted from anywhere. Without either, only from this "
    "machine.",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file for the link's state: restarted with it, unfinished runs resume.",
)
@click.option(
    "--max-crashes",
    default=3,
    show_default=True,
    help="With --db: a run going on each of the last N times the link went down fails "
    "instead of resuming again.",
)
@click.option(
    "--max-idle",
    "max_idle_s",
    default=3600.0,
    show_default=True,
    help="Seconds a submitted run's ServerApp may go without calling the link before its "
    "run fails as hung.",
)
@click.option(
    "--max-nodes",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Nodes connected at once; more are turned away, told why, and retry.",
)
@click.option(
    "--registration-expiry",
    "registration_expiry_s",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds after which a registered node that is not connected is forgotten "
    "(never for --node-keys keys or --node-certs certificates).",
)
@click.option(
    "--max-node-bytes-in-flight",
    callback=_size,
    default="4GiB",
    show_default=True,
    help="Bytes one node's replies may hold on the link until folded; a larger reply is refused.",
)
@click.option(
    "--max-bytes-in-flight",
    callback=_size,
    default="8GiB",
    show_default=True,
    help="Bytes all nodes' replies may hold on the link until folded.",
)
@click.option("--min-nodes", default=1, show_default=True, help="With APP_DIR: nodes to wait for.")
@click.option("--wait", "wait_s", default=300.0, show_default=True, help="Seconds to wait.")
@click.option(
    "--dashboard",
    "dashboard_port",
    type=click.IntRange(0, 65535),
    help="Serve a live web page of the link's runs and nodes on this port (0: a free one); "
    "its login URL is printed here.",
)
@click.option(
    "--dashboard-host",
    default="127.0.0.1",
    show_default=True,
    help="With --dashboard: the address it listens on; anything but loopback is reachable "
    "from the network.",
)
@run_config_option
@out_option(
    "./runs/<app>/<run id> for submitted runs; with APP_DIR, APP_DIR/runs/<date>-<time>-link, "
    "or APP_DIR/runs/<db name>-link with --db"
)
@verbose_option
@click.pass_context
def link_command(
    ctx: click.Context,
    app_dir: Path | None,
    address: str,
    certs: Path | None,
    insecure: bool,
    mtls: bool,
    node_certs: tuple[Path, ...],
    revoked: Path | None,
    node_keys: Path | None,
    require_signatures: bool,
    control_keys: Path | None,
    db: Path | None,
    max_crashes: int,
    max_idle_s: float,
    max_nodes: int,
    registration_expiry_s: float,
    max_node_bytes_in_flight: int,
    max_bytes_in_flight: int,
    min_nodes: int,
    wait_s: float,
    dashboard_port: int | None,
    dashboard_host: str,
    run_config: tuple[str, ...],
    out_dir: Path | None,
    verbose: bool,
) -> None:
    """Serve runs to the nodes that connect to ADDRESS.

    Without APP_DIR the link stays up and runs the apps submitted to it (pollinate run APP
    --federation NAME), one at a time; pollinate ls, log and stop manage them. With APP_DIR
    it runs that app once, when --min-nodes nodes are connected, and exits. TLS is on:
    give --certs (and --mtls for node and operator certificates), or --insecure for plain
    text on a trusted network. With --db, a link that
    was stopped or killed resumes its unfinished runs after their last completed round.
    """
    from ..deploy import serve_link  # gRPC loads only for deployment commands

    ctx.meta[VERBOSE] = verbose
    open_link = functools.partial(
        serve_link,
        address,
        certs=certs,
        insecure=insecure,
        mtls=mtls,
        node_certs=node_certs or None,
        revoked=revoked,
        require_signatures=require_signatures,
        registered_keys=node_keys,
        control_keys=control_keys,
        db=db,
        max_crashes=max_crashes,
        max_idle_s=max_idle_s,
        max_nodes=max_nodes,
        registration_expiry_s=registration_expiry_s,
        max_node_bytes_in_flight=max_node_bytes_in_flight,
        max_bytes_in_flight=max_bytes_in_flight,
    )
    stderr = Console(stderr=True, highlight=False)
    if dashboard_port is None and dashboard_host != "127.0.0.1":
        raise ConfigError("--dashboard-host goes with --dashboard PORT")
    dashboard = None if dashboard_port is None else (dashboard_host, dashboard_port)
    if app_dir is None:
        if run_config:
            raise ConfigError("--run-config goes with APP_DIR: submitted runs bring their own")
        _serve_submitted_runs(open_link, out_dir or Path("runs"), address, dashboard, stderr)
        return
    app = load_app_config(app_dir)
    config = resolve_run_config(app, parse_overrides(run_config, "--run-config"))
    # With a database the run may resume later: its folder must not depend on the time.
    default = f"{db.stem}-link" if db is not None else f"{timestamp()}-link"
    out = out_dir or app.app_dir / "runs" / default
    stderr.print(f"[bold]{escape(app.name)}[/]: waiting for {min_nodes} node(s) on {address}")
    with cli_logging(stderr, verbose):
        result = _serve_one_run(
            open_link,
            app,
            config,
            min_nodes,
            wait_s,
            out,
            resume=db is not None,
            dashboard=dashboard,
            stderr=stderr,
        )
    rounds = sum(r.server_round > 0 for r in result.rounds)
    click.echo(f"Finished {rounds} rounds; results: {shown(out)}")


def _serve_submitted_runs(
    open_link: Callable[..., contextlib.AbstractContextManager[Runs]],
    runs_dir: Path,
    address: str,
    dashboard: tuple[str, int] | None,
    stderr: Console,
) -> None:
    """A long-lived link: run what ``pollinate run`` submits until Ctrl-C."""
    with (
        cli_logging(stderr, verbose=True),
        open_link(runs_dir=runs_dir) as runs,
        _link_dashboard(runs, dashboard, f"link {address}", stderr),
    ):
        runs.start()
        stderr.print(
            f"link on {escape(address)}: runs come with `pollinate run APP --federation "
            "NAME`, and nodes with `pollinate node --link HOST:PORT`; Ctrl-C stops it",
            soft_wrap=True,
        )
        wait_for_interrupt()


def _serve_one_run(
    open_link: Callable[..., contextlib.AbstractContextManager[Runs]],
    app: AppConfig,
    config: dict[str, UserConfigValue],
    min_nodes: int,
    wait_s: float,
    out: Path,
    *,
    resume: bool,
    dashboard: tuple[str, int] | None,
    stderr: Console,
) -> Result:
    """``pollinate link APP_DIR``: one run of the app, its ServerApp loaded from APP_DIR."""
    from ..deploy import AppBundle, AppRef, pack_app

    server_app = load_object(app.serverapp, ServerApp, app.app_dir.resolve())
    try:  # the code travels too, for nodes without their own copy
        bundle: AppBundle | None = pack_app(app.app_dir)
    except ConfigError as err:
        stderr.print(f"[yellow]warning:[/] {escape(str(err))}; nodes need their own copy")
        bundle = None
    with (
        contextlib.closing(progress_view(stderr)) as view,
        open_link(runs_dir=None) as runs,
        _link_dashboard(runs, dashboard, f"{app.name} on its link", stderr),
    ):
        run_id = runs.submit(
            app.name,
            config,
            bundle=bundle,
            app=None if bundle is None else AppRef(bundle.digest, app.serverapp, app.clientapp),
            server_app=server_app,
            min_nodes=min_nodes,
            wait_s=wait_s,
            out_dir=out,
            observers=[view],
            resume=resume,
        )
        runs.start()
        return runs.wait(run_id)


def _link_dashboard(
    runs: Runs, dashboard: tuple[str, int] | None, title: str, stderr: Console
) -> contextlib.AbstractContextManager[None]:
    """``--dashboard``: the link's runs and nodes served while the link is up (or nothing).

    Its login URL goes to this console only: whoever started the link is its operator here
    (they can read its database anyway); operators elsewhere use ``pollinate dashboard
    --link`` with their own credentials.
    """
    if dashboard is None:
        return contextlib.nullcontext()
    from ..dashboard import link_routes
    from ..deploy import LocalLinkView
    from ._dashboard import serving

    host, port = dashboard
    return serving(link_routes(LocalLinkView(runs.link, runs)), host, port, title, stderr)


def wait_for_interrupt() -> None:
    """Block until Ctrl-C (a KeyboardInterrupt) or SIGTERM."""
    threading.Event().wait()


def check_link_trust(root_cert: Path | None, insecure: bool) -> None:
    """Exactly one of --root-cert (TLS) and --insecure names how to reach the link."""
    if insecure == (root_cert is not None):
        raise ConfigError(
            "give --root-cert (the CA certificate, e.g. certs/ca.pem) for TLS, or --insecure "
            "for plain text on a trusted network"
        )


@click.command("node", short_help="Serve ClientApps to a link.")
@click.argument("app_dir", required=False, type=click.Path(path_type=Path))
@click.option("--link", "address", required=True, help="The link's HOST:PORT.")
@click.option(
    "--root-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The CA certificate that signed the link's certificate (e.g. certs/ca.pem).",
)
@_INSECURE
@click.option(
    "--cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="This node's client certificate (nodeN.pem from pollinate certs --nodes N), for "
    "a link with --mtls.",
)
@click.option(
    "--key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The private key of --cert (nodeN.key); without --cert, a signing key (pollinate "
    "certs --signing-keys) for a link with --node-keys.",
)
@click.option(
    "--node-config",
    multiple=True,
    metavar='"KEY=VALUE ..."',
    help='What this node holds, e.g. "partition-id=0 num-partitions=3".',
)
@click.option(
    "--app-cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Without APP_DIR: where fetched apps are unpacked (default ~/.cache/pollinate/apps).",
)
@click.option(
    "--id-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Without --key: where the node keeps the id the link gave it, to get it back "
    "after a restart (default: one per link and node config in ~/.cache/pollinate/nodes).",
)
@click.option(
    "--max-handshake-failures",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Give up after this many failed TLS handshakes in a row (wrong --root-cert?).",
)
@click.option("--once", is_flag=True, help="Leave after one run instead of waiting for more.")
@verbose_option
@click.pass_context
def node_command(
    ctx: click.Context,
    app_dir: Path | None,
    address: str,
    root_cert: Path | None,
    insecure: bool,
    cert: Path | None,
    key: Path | None,
    node_config: tuple[str, ...],
    app_cache: Path | None,
    id_file: Path | None,
    max_handshake_failures: int,
    once: bool,
    verbose: bool,
) -> None:
    """Connect to the link at --link and answer its messages with a ClientApp.

    With APP_DIR the node answers with that app's ClientApp, and refuses runs of other
    apps. Without, it fetches each run's app from the link (checked by its SHA-256) and
    runs its ClientApp: only join links you trust. The node reconnects with backoff when
    the link goes away, keeping its place (without --key, its id is kept in --id-file).
    """
    from ..deploy import Backoff, IdFile, NodeKey, channel_credentials, run_node

    ctx.meta[VERBOSE] = verbose
    check_link_trust(root_cert, insecure)
    if cert is not None and (key is None or root_cert is None):
        raise ConfigError("--cert goes with --key (its private key) and --root-cert")
    client_app, name = None, None
    if app_dir is not None:
        app = load_app_config(app_dir)
        client_app = load_object(app.clientapp, ClientApp, app.app_dir.resolve())
        name = app.name
    config = {o.key: o.value for o in parse_overrides(node_config, "--node-config")}
    stderr = Console(stderr=True, highlight=False)
    serving = f"[bold]{escape(name)}[/] node" if name else "node (apps come from the link)"
    stderr.print(f"{serving} connecting to {escape(address)}")
    ids = None
    if key is None:  # a certificate or key is the node's identity; without, a file keeps its id
        ids = IdFile.claim(id_file or IdFile.default_path(address, config, name or ""), address)
    tls = (cert, key) if cert is not None else ()
    with cli_logging(stderr, verbose=True), contextlib.ExitStack() as stack:
        if ids is not None:
            stack.callback(ids.close)
        run_node(
            address,
            client_app,
            app_name=name,
            app_cache=app_cache,
            node_config=config,
            credentials=None if root_cert is None else channel_credentials(root_cert, *tls),
            key=None if key is None or cert is not None else NodeKey.load(key),
            backoff=Backoff(),
            until_bye=once,
            id_file=ids,
            max_handshake_failures=max_handshake_failures,
        )
