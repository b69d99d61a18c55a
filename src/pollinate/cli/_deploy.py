"""``pollinate link`` and ``pollinate node``: run an app over the network, unchanged.

``pollinate link APP_DIR`` serves one run of the app's ServerApp to the nodes that connect;
``pollinate node APP_DIR --link HOST:PORT`` serves the app's ClientApp from each machine.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from ..client import ClientApp
from ..errors import ConfigError
from ..loader import load_object
from ..server import ServerApp
from ._config import load_app_config, resolve_run_config
from ._display import shown
from ._overrides import parse_overrides
from ._progress import cli_logging, progress_view
from ._run import VERBOSE, out_option, run_config_option, timestamp, verbose_option

__all__ = ["link_command", "node_command"]

_APP_DIR = click.argument("app_dir", default=".", type=click.Path(path_type=Path))
_INSECURE = click.option(
    "--insecure", is_flag=True, help="Plain text, no TLS: trusted networks only."
)


@click.command("link", short_help="Serve one run of an app to nodes over gRPC.")
@_APP_DIR
@click.option("--address", default="0.0.0.0:9400", show_default=True, help="Where to listen.")
@click.option(
    "--certs",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder with server.pem and server.key (pollinate certs --out DIR makes one).",
)
@_INSECURE
@click.option(
    "--node-keys",
    type=click.Path(path_type=Path),
    help="Admit only nodes whose public key is here (a folder of *.pub files, or one file).",
)
@click.option("--require-signatures", is_flag=True, help="Every node must sign with its key.")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file for the link's state: restarted with it, the run resumes.",
)
@click.option("--min-nodes", default=1, show_default=True, help="Nodes to wait for.")
@click.option("--wait", "wait_s", default=300.0, show_default=True, help="Seconds to wait.")
@run_config_option
@out_option("APP_DIR/runs/<date>-<time>-link, or APP_DIR/runs/<db name>-link with --db")
@verbose_option
@click.pass_context
def link_command(
    ctx: click.Context,
    app_dir: Path,
    address: str,
    certs: Path | None,
    insecure: bool,
    node_keys: Path | None,
    require_signatures: bool,
    db: Path | None,
    min_nodes: int,
    wait_s: float,
    run_config: tuple[str, ...],
    out_dir: Path | None,
    verbose: bool,
) -> None:
    """Run the ServerApp of the app in APP_DIR on the nodes that connect to ADDRESS.

    The run starts once --min-nodes nodes are connected, and ends by telling them goodbye.
    TLS is on: give --certs, or --insecure for plain text on a trusted network. With --db, a
    link that was stopped or killed resumes the run after its last completed round.
    """
    from ..deploy import start_server  # gRPC loads only for deployment commands

    ctx.meta[VERBOSE] = verbose
    app = load_app_config(app_dir)
    config = resolve_run_config(app, parse_overrides(run_config, "--run-config"))
    server_app = load_object(app.serverapp, ServerApp, app.app_dir.resolve())
    # With a database the run may resume later: its folder must not depend on the time.
    default = f"{db.stem}-link" if db is not None else f"{timestamp()}-link"
    out = out_dir or app.app_dir / "runs" / default
    stderr = Console(stderr=True, highlight=False)
    stderr.print(f"[bold]{escape(app.name)}[/]: waiting for {min_nodes} node(s) on {address}")
    with cli_logging(stderr, verbose), contextlib.closing(progress_view(stderr)) as view:
        result = start_server(
            address,
            server_app=server_app,
            run_config=config,
            certs=certs,
            insecure=insecure,
            min_nodes=min_nodes,
            wait_s=wait_s,
            out_dir=out,
            observers=[view],
            require_signatures=require_signatures,
            registered_keys=node_keys,
            db=db,
            run_name=app.name,
        )
    rounds = sum(r.server_round > 0 for r in result.rounds)
    click.echo(f"Finished {rounds} rounds; results: {shown(out)}")


@click.command("node", short_help="Serve an app's ClientApp to a link.")
@_APP_DIR
@click.option("--link", "address", required=True, help="The link's HOST:PORT.")
@click.option(
    "--root-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The CA certificate that signed the link's certificate (e.g. certs/ca.pem).",
)
@_INSECURE
@click.option(
    "--key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="This node's private key (nodeN.key from pollinate certs --nodes N).",
)
@click.option(
    "--node-config",
    multiple=True,
    metavar='"KEY=VALUE ..."',
    help='What this node holds, e.g. "partition-id=0 num-partitions=3".',
)
@click.option("--once", is_flag=True, help="Leave after one run instead of waiting for more.")
@verbose_option
@click.pass_context
def node_command(
    ctx: click.Context,
    app_dir: Path,
    address: str,
    root_cert: Path | None,
    insecure: bool,
    key: Path | None,
    node_config: tuple[str, ...],
    once: bool,
    verbose: bool,
) -> None:
    """Connect to the link at --link and answer its messages with APP_DIR's ClientApp.

    The node reconnects with backoff when the link goes away, keeping its place.
    """
    from ..deploy import Backoff, NodeKey, channel_credentials, run_node

    ctx.meta[VERBOSE] = verbose
    if insecure == (root_cert is not None):
        raise ConfigError(
            "give --root-cert (the CA certificate, e.g. certs/ca.pem) for TLS, or --insecure "
            "for plain text on a trusted network"
        )
    app = load_app_config(app_dir)
    client_app = load_object(app.clientapp, ClientApp, app.app_dir.resolve())
    config = {o.key: o.value for o in parse_overrides(node_config, "--node-config")}
    stderr = Console(stderr=True, highlight=False)
    stderr.print(f"[bold]{escape(app.name)}[/] node connecting to {escape(address)}")
    with cli_logging(stderr, verbose=True):
        run_node(
            address,
            client_app,
            node_config=config,
            credentials=None if root_cert is None else channel_credentials(root_cert),
            key=None if key is None else NodeKey.load(key),
            backoff=Backoff(),
            until_bye=once,
        )
