"""``pollinate dashboard``: a run folder (or a folder of runs) in the browser, live.

Also ``run_dashboard``, which ``pollinate run --dashboard`` serves its run folder with. The
dashboard package (starlette, uvicorn, jinja2) is imported only when one starts.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape

from ._display import shown

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

__all__ = ["dashboard_command", "run_dashboard", "wait_for_interrupt"]

_EXAMPLES = """\b
Examples:
  pollinate dashboard my-app                      # every run of the app, newest first
  pollinate dashboard my-app/runs/20260101-120000-1a2b3c4d --port 8050
  pollinate run my-app --dashboard                # watch a run as it goes
"""


@click.command(
    "dashboard",
    short_help="Watch a run folder, or a folder of runs, in a browser.",
    epilog=_EXAMPLES,
)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on; anything but loopback is reachable from the network.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="The port to listen on [default: a free one].",
)
def dashboard_command(run_dir: Path, host: str, port: int) -> None:
    """Serve RUN_DIR's curves, rounds, failures and checkpoints as a web page, live.

    RUN_DIR is one run's folder (it has metrics.jsonl), a folder of runs (APP_DIR/runs),
    or an app's folder (its runs/).
    Open the login URL printed: it carries the access token. Ctrl-C stops it.
    """
    from ..dashboard import folder_routes

    console = Console(stderr=True, highlight=False)
    title = shown(run_dir.resolve())
    with serving(folder_routes(run_dir), host, port, title, console):
        console.print("press Ctrl-C to stop", style="dim")
        try:
            wait_for_interrupt()
        except KeyboardInterrupt:
            console.print("dashboard stopped")


@contextlib.contextmanager
def run_dashboard(out_dir: Path, port: int, console: Console) -> Iterator[None]:
    """Serve the run folder ``out_dir`` on 127.0.0.1 while the block runs (``run --dashboard``)."""
    from ..dashboard import run_routes

    with serving(run_routes(out_dir), "127.0.0.1", port, f"run {out_dir.name}", console):
        try:
            yield
        finally:  # a failed run's folder is worth a look too
            console.print(
                f"dashboard stops with the run: see it again with pollinate dashboard "
                f"{escape(shown(out_dir))}",
                soft_wrap=True,
            )


@contextlib.contextmanager
def serving(
    routes: Sequence[BaseRoute], host: str, port: int, title: str, console: Console
) -> Iterator[None]:
    """A started DashboardServer for the block; its login URL printed first."""
    from ..dashboard import DashboardServer

    with DashboardServer(routes, host=host, port=port, title=title) as server:
        console.print(f"dashboard: open {escape(server.login_url)}", soft_wrap=True)
        yield


def wait_for_interrupt() -> None:
    """Block until Ctrl-C (a KeyboardInterrupt) or SIGTERM."""
    threading.Event().wait()
