"""``pollinate ls``, ``log`` and ``stop``, and ``pollinate run`` on a deployed federation.

They talk to a link's Control service. Which link: ``--link HOST:PORT`` with
``--root-cert``/``--insecure`` (and ``--key``), or a deployed federation of the app in
APP_DIR (default ``.``): ``[tool.pollinate.federations.NAME]`` with an ``address``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._text import printable
from ..config import AppConfig, Deployment, load_app_config, resolve_deployment
from ..context import UserConfigValue
from ..errors import ConfigError
from ._deploy import check_link_trust
from ._display import shown
from ._options import VERBOSE, json_option, verbose_option

if TYPE_CHECKING:  # gRPC loads only when a command talks to a link
    from ..deploy import ControlClient, NodeStatus, RunSummary

__all__ = [
    "LinkChoice",
    "control_client",
    "link_options",
    "log_command",
    "ls_command",
    "stop_command",
    "submit_run",
]

F = TypeVar("F", bound=Callable[..., Any])
EXIT_RUN_FAILED = 1
LATEST_FAILURE_CHARS = 60
"""Of the latest failure's reason, what the node table shows."""


@dataclass(frozen=True, slots=True)
class LinkChoice:
    """How the user named the link: an app's deployed federation, or --link itself."""

    app_dir: Path
    federation: str | None
    address: str | None
    root_cert: Path | None
    insecure: bool
    key: Path | None
    cert: Path | None

    def deployment(self) -> Deployment:
        """The link to talk to; a ConfigError says what is missing."""
        if self.address is None:
            if self.root_cert is not None or self.insecure or self.key or self.cert:
                raise ConfigError(
                    "--root-cert, --insecure, --cert and --key go with --link HOST:PORT"
                )
            try:
                app = load_app_config(self.app_dir)
            except ConfigError as err:
                raise ConfigError(
                    f"{err}; or name the link itself: --link HOST:PORT --root-cert ca.pem"
                ) from None
            return resolve_deployment(app, self.federation)
        check_link_trust(self.root_cert, self.insecure)
        if self.cert is not None and (self.key is None or self.insecure):
            raise ConfigError("--cert goes with --key (its private key) and --root-cert")
        return Deployment(
            "--link", self.address, self.root_cert, self.insecure, self.key, self.cert
        )


def link_options(command: F) -> F:
    """The options that name the link; the command gets them as ``link: LinkChoice``."""

    @functools.wraps(command)
    def with_link(*args: Any, **kwargs: Any) -> Any:
        fields = ("app_dir", "federation", "address", "root_cert", "insecure", "key", "cert")
        choice = LinkChoice(*(kwargs.pop(name) for name in fields))
        return command(*args, link=choice, **kwargs)

    for option in reversed(_LINK_OPTIONS):
        with_link = option(with_link)
    return cast(F, with_link)


_LINK_OPTIONS = (
    click.option(
        "--app",
        "app_dir",
        default=".",
        type=click.Path(path_type=Path),
        show_default=True,
        help="The app whose federation names the link.",
    ),
    click.option("--federation", help="A deployed federation of the app (default: its default)."),
    click.option("--link", "address", help="The link's HOST:PORT, instead of a federation."),
    click.option(
        "--root-cert",
        type=click.Path(dir_okay=False, path_type=Path),
        help="With --link: the CA certificate that signed the link's certificate.",
    ),
    click.option("--insecure", is_flag=True, help="With --link: plain text, no TLS."),
    click.option(
        "--key",
        type=click.Path(dir_okay=False, path_type=Path),
        help="With --link: the private key of --cert; without --cert, an operator key that "
        "signs requests (links with --control-keys).",
    ),
    click.option(
        "--cert",
        type=click.Path(dir_okay=False, path_type=Path),
        help="With --link: the operator's client certificate (operatorN.pem, for links "
        "with --mtls).",
    ),
)


def control_client(deployment: Deployment) -> ControlClient:
    """A Control client of the link, with the operator's credentials the user gave."""
    from ..deploy import ControlClient, NodeKey, channel_credentials

    cert, key = deployment.cert, deployment.key
    credentials = None
    if deployment.root_cert is not None:
        pair = () if cert is None or key is None else (cert, key)
        credentials = channel_credentials(deployment.root_cert, *pair)
    signing = None if key is None or cert is not None else NodeKey.load(key)
    return ControlClient(deployment.address, credentials, signing)


def submit_run(
    app: AppConfig,
    deployment: Deployment,
    run_config: dict[str, UserConfigValue],
    follow: bool,
    as_json: bool,
) -> None:
    """``pollinate run`` on a deployed federation: pack the app, submit it, maybe follow it."""
    from ..deploy import Submission, pack_app

    stderr = Console(stderr=True, highlight=False)
    bundle = pack_app(app.app_dir)
    submission = Submission(
        app.name,
        bundle,
        app.serverapp,
        app.clientapp,
        run_config,
        deployment.min_nodes,
        deployment.wait_s,
    )
    with control_client(deployment) as client:
        run = client.submit(submission)
        stderr.print(
            f"[bold]{escape(app.name)}[/] submitted to [bold]{escape(deployment.name)}[/] "
            f"({escape(deployment.address)}) as run [bold]{run.run_id}[/]; it waits for "
            f"{deployment.min_nodes} node(s)",
            soft_wrap=True,
        )
        if follow:
            run = _follow(client, str(run.run_id), stderr)
        else:
            where = f"--app {shown(app.app_dir)} --federation {deployment.name}"
            stderr.print(
                f"follow it with: pollinate log {run.run_id} --follow {escape(where)}",
                style="dim",
                soft_wrap=True,
            )
    if as_json:
        click.echo(json.dumps(run.to_json(), separators=(",", ":")))
    if follow and run.status != "finished":
        raise click.exceptions.Exit(EXIT_RUN_FAILED)


def _follow(client: ControlClient, run: str, console: Console) -> RunSummary:
    """Print the run's log as it grows; the run once it ended."""
    from ..deploy import RunSummary

    for item in client.logs(run, follow=True):
        if isinstance(item, RunSummary):
            colour = "green" if item.status == "finished" else "red"
            console.print(f"[{colour}]run {item.run_id} {item.status}[/]", soft_wrap=True)
            if item.out_dir:
                console.print(f"results on the link: {_safe(item.out_dir)}", soft_wrap=True)
            return item
        console.print(_safe(item), soft_wrap=True, highlight=False)
    raise ConfigError("the link ended the log without saying how the run ended")


@click.command("ls", short_help="List the runs (or nodes) on a link.")
@link_options
@click.option("--nodes", is_flag=True, help="List the link's nodes instead of its runs.")
@json_option("The runs (or nodes)")
@verbose_option
@click.pass_context
def ls_command(
    ctx: click.Context,
    link: LinkChoice,
    nodes: bool,
    as_json: bool,
    verbose: bool,
) -> None:
    """List the runs the link knows: id, app, status, rounds done, when, and for how long.

    pollinate log RUN_ID, and --json, say where each run's results are on the link. With
    --nodes: the nodes it knows, connected or not, when it last heard from each, the tasks
    sent, done and failed (lost: no reply came), and the latest failure's reason.
    """
    ctx.meta[VERBOSE] = verbose
    deployment = link.deployment()
    if nodes:
        _list_nodes(deployment, as_json)
        return
    with control_client(deployment) as client:
        runs = client.runs()
    if as_json:
        click.echo(json.dumps([r.to_json() for r in runs], separators=(",", ":")))
        return
    if not runs:
        click.echo(f"no runs on {deployment.address} yet")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("run id", "app", "status", "rounds", "submitted", "took"):
        table.add_column(column, justify="right" if column == "rounds" else "left", no_wrap=True)
    for run in runs:
        table.add_row(
            str(run.run_id),
            _safe(run.name),
            _status(run.status),
            str(run.rounds_done),
            dt.datetime.fromtimestamp(run.submitted_at).strftime("%m-%d %H:%M:%S"),
            _took(run),
        )
    Console(highlight=False).print(table)


def _list_nodes(deployment: Deployment, as_json: bool) -> None:
    """``pollinate ls --nodes``: the link's node table (everything in it came from nodes)."""
    with control_client(deployment) as client:
        nodes = client.list_nodes()
    if as_json:
        click.echo(json.dumps([n.to_json() for n in nodes], separators=(",", ":")))
        return
    if not nodes:
        click.echo(f"no nodes on {deployment.address} yet")
        return
    # The counts keep their width; the latest failure takes what is left, cut to one line.
    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    for column in ("node id", "state", "last seen"):
        table.add_column(column, no_wrap=True)
    for column in ("sent", "done", "failed", "lost"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("latest failure", no_wrap=True, overflow="ellipsis", ratio=1)
    for node in nodes:
        table.add_row(*_node_row(node))
    Console(highlight=False).print(table)


def _node_row(node: NodeStatus) -> tuple[str, ...]:
    seen = node.last_seen
    latest = node.failures[-1].reason if node.failures else ""
    if len(latest) > LATEST_FAILURE_CHARS:  # --json has all of it
        latest = latest[: LATEST_FAILURE_CHARS - 1] + "…"
    return (
        str(node.node_id),
        "[green]connected[/]" if node.connected else "[yellow]gone[/]",
        "" if seen is None else dt.datetime.fromtimestamp(seen).strftime("%m-%d %H:%M:%S"),
        str(node.tasks_sent),
        str(node.tasks_done),
        str(node.tasks_failed),
        str(node.tasks_lost),
        _safe(latest),
    )


def _safe(text: str) -> str:
    """What a link sent, shown as text: no rich markup, no terminal control characters."""
    return escape(printable(text))


def _status(status: str) -> str:
    colour = {"finished": "green", "running": "cyan", "failed": "red", "stopped": "yellow"}
    return f"[{colour[status]}]{status}[/]" if status in colour else _safe(status)


def _took(run: RunSummary) -> str:
    if run.started_at is None:
        return ""
    seconds = (run.ended_at or time.time()) - run.started_at
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


@click.command("log", short_help="Show a run's log on a link.")
@click.argument("run_id")
@link_options
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
@verbose_option
@click.pass_context
def log_command(
    ctx: click.Context,
    run_id: str,
    link: LinkChoice,
    follow: bool,
    verbose: bool,
) -> None:
    """Print the log of RUN_ID (its first digits suffice): status, rounds, warnings, the end.

    With --follow it waits for new lines until the run ends, and exits with 1 unless it
    finished.
    """
    from ..deploy import RunSummary

    ctx.meta[VERBOSE] = verbose
    deployment = link.deployment()
    stderr = Console(stderr=True, highlight=False)
    with control_client(deployment) as client:
        if follow:
            run = _follow(client, run_id, stderr)
            if run.status != "finished":
                raise click.exceptions.Exit(EXIT_RUN_FAILED)
            return
        for item in client.logs(run_id):
            if isinstance(item, RunSummary):
                stderr.print(f"run {item.run_id} is {_status(item.status)}", soft_wrap=True)
                if item.out_dir:
                    stderr.print(f"results on the link: {_safe(item.out_dir)}", soft_wrap=True)
            else:
                click.echo(printable(item))


@click.command("stop", short_help="Stop a run on a link.")
@click.argument("run_id")
@link_options
@verbose_option
@click.pass_context
def stop_command(
    ctx: click.Context,
    run_id: str,
    link: LinkChoice,
    verbose: bool,
) -> None:
    """Stop RUN_ID: a queued run never starts; a running one ends at its next message."""
    ctx.meta[VERBOSE] = verbose
    deployment = link.deployment()
    with control_client(deployment) as client:
        run = client.stop(run_id)
    if run.status == "stopped":
        click.echo(f"run {run.run_id} is stopped")
    elif run.status in ("finished", "failed"):
        click.echo(f"run {run.run_id} had already ended: {run.status}")
    else:
        click.echo(f"run {run.run_id} is stopping (pollinate log {run.run_id} --follow shows it)")
