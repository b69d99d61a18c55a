"""``pollinate dashboard``: a run folder, a folder of runs, or a link in the browser, live.

Also ``run_dashboard``, which ``pollinate run --dashboard`` serves its run folder with. The
dashboard package (starlette, uvicorn, jinja2) is imported only when one starts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape

from ..errors import ConfigError
from ._control import LinkChoice, control_client, link_options
from ._deploy import wait_for_interrupt
from ._display import shown

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

__all__ = [
    "LINGER_S",
    "dashboard_command",
    "linger",
    "run_dashboard",
    "serve_until_interrupted",
    "serving",
    "wait_for_interrupt",
]

LINGER_S = 3.0
"""Seconds ``run --dashboard`` serves after the run: more than the pages' 2 s refresh."""

_EXAMPLES = """\b
Examples:
  pollinate dashboard my-app                      # every run of the app, newest first
  pollinate dashboard my-app/runs/20260101-120000-1a2b3c4d --port 8050
  pollinate run my-app --dashboard                # watch a run as it goes
  pollinate dashboard --link link.lab:9400 --root-cert ca.pem --key operator.key
  pollinate dashboard --app my-app --federation prod   # the link of a deployed federation
  pollinate dashboard --link 127.0.0.1:9400 --insecure --runs-dir runs   # a link on this host
"""


@click.command(
    "dashboard",
    short_help="Watch a run folder, a folder of runs, or a link in a browser.",
    epilog=_EXAMPLES,
)
@click.argument(
    "run_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on; anything but loopback is reachable from the network, "
    "in plain HTTP: from another machine, use an SSH tunnel (ssh -L) instead.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="The port to listen on [default: a free one].",
)
@click.option(
    "--runs-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="With a link: the link's runs folder as this machine sees it (a link on this host, "
    "a shared disk); a run's curves and files are shown only from inside it.",
)
@link_options
def dashboard_command(
    run_dir: Path | None, host: str, port: int, runs_dir: Path | None, link: LinkChoice
) -> None:
    """Serve RUN_DIR's curves, rounds, failures and checkpoints as a web page, live.

    RUN_DIR is one run's folder (it has metrics.jsonl), a folder of runs (APP_DIR/runs),
    or an app's folder (its runs/). Instead of RUN_DIR, --link HOST:PORT (or --federation,
    a deployed federation of --app) shows a link's runs and nodes, read through its Control
    service with the operator's credentials (--root-cert, --key, --cert), as pollinate ls;
    a run's curves and files show only with --runs-dir, from inside it. Open the login URL
    printed: it carries the access token. Ctrl-C stops it.
    """
    watches_link = link.address is not None or link.federation is not None
    if run_dir is not None and watches_link:
        raise ConfigError("give RUN_DIR or a link (--link, --federation), not both")
    if run_dir is None and not watches_link:
        raise ConfigError(
            "give a run folder (pollinate dashboard my-app/runs) or a link "
            "(pollinate dashboard --link HOST:PORT --root-cert ca.pem)"
        )
    if run_dir is not None and runs_dir is not None:
        raise ConfigError("--runs-dir goes with a link (--link, --federation), not RUN_DIR")
    if run_dir is not None:
        from ..dashboard import folder_routes

        serve_until_interrupted(folder_routes(run_dir), host, port, shown(run_dir.resolve()))
        return
    from ..dashboard import link_routes
    from ..deploy import ControlLinkView

    deployment = link.deployment()
    with control_client(deployment) as client:
        view = ControlLinkView(client, runs_dir=runs_dir)
        view.runs()  # a link out of reach, or credentials it refuses: one error, now
        title = f"link {deployment.address}"
        serve_until_interrupted(link_routes(view), host, port, title)


def serve_until_interrupted(routes: Sequence[BaseRoute], host: str, port: int, title: str) -> None:
    """Serve ``routes`` until Ctrl-C, the login URL printed first."""
    console = Console(stderr=True, highlight=False)
    with serving(routes, host, port, title, console):
        console.print("press Ctrl-C to stop", style="dim")
        try:
            wait_for_interrupt()
        except KeyboardInterrupt:
            console.print("dashboard stopped")


@contextlib.contextmanager
def run_dashboard(out_dir: Path, port: int, console: Console) -> Iterator[None]:
    """Serve the run folder ``out_dir`` on 127.0.0.1 while the block runs (``run --dashboard``).

    A run that finishes is served ``LINGER_S`` longer, so open pages show its end.
    """
    from ..dashboard import run_routes

    with serving(run_routes(out_dir), "127.0.0.1", port, f"run {out_dir.name}", console):
        try:
            yield
            linger()
        finally:  # a failed run's folder is worth a look too
            console.print(
                f"dashboard stops with the run: see it again with pollinate dashboard "
                f"{escape(shown(out_dir))}",
                soft_wrap=True,
            )


def linger() -> None:
    """Serve on for ``LINGER_S``: open pages refresh once more and show the run finished."""
    time.sleep(LINGER_S)


@contextlib.contextmanager
def serving(
    routes: Sequence[BaseRoute], host: str, port: int, title: str, console: Console
) -> Iterator[None]:
    """A started DashboardServer for the block; its login URL printed first."""
    from ..dashboard import DashboardServer

    with DashboardServer(routes, host=host, port=port, title=title) as server:
        console.print(f"dashboard: open {escape(server.login_url)}", soft_wrap=True)
        yield
