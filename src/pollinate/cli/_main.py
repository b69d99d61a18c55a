"""The ``pollinate`` command: its subcommands, and how errors reach the user.

A PollinateError is the user's to fix: it is shown as one ``error: ...`` line and the
command exits with 1, without a traceback. Any other exception comes from the app's code
(or is a bug): its traceback is shown, starting at the first frame outside pollinate.
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.traceback import Traceback

import pollinate

from ..errors import PollinateError
from ._certs import certs_command
from ._compare import compare_command
from ._control import log_command, ls_command, stop_command
from ._dashboard import dashboard_command
from ._deploy import link_command, node_command
from ._display import shown
from ._new import new_command
from ._options import VERBOSE
from ._report import report_command
from ._run import run_command

__all__ = ["cli", "main"]

# gRPC's C core logs each failed TLS handshake on stderr; pollinate says what went wrong.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

_HIDDEN_FRAMES = (
    *(str(Path(module.__file__ or "").parent) for module in (pollinate, click, importlib)),
    "<frozen importlib",
)
"""Where frames come from that the user did not write: tracebacks skip or shorten them."""

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager stopping us): unwind as Ctrl-C does, so state is kept."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


class _Pollinate(click.Group):
    """A click group that turns pollinate's errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminate)
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except PollinateError as err:
            _report_error(err, verbose=bool(ctx.meta.get(VERBOSE)))
            ctx.exit(EXIT_ERROR)
        except _Terminated:
            _stderr().print("[bold red]terminated[/]")
            ctx.exit(EXIT_TERMINATED)
        except KeyboardInterrupt:
            _stderr().print("[bold red]interrupted[/]")
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as err:
            _report_crash(err)
            ctx.exit(EXIT_ERROR)


@click.group(cls=_Pollinate, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(pollinate.__version__, prog_name="pollinate", message="%(prog)s %(version)s")
def cli() -> None:
    """pollinate: federated learning, in simulation and in deployment.

    Start with `pollinate new my-app`, then `pollinate run my-app`.
    """


cli.add_command(new_command)
cli.add_command(run_command)
cli.add_command(report_command)
cli.add_command(compare_command)
cli.add_command(certs_command)
cli.add_command(link_command)
cli.add_command(node_command)
cli.add_command(ls_command)
cli.add_command(log_command)
cli.add_command(stop_command)
cli.add_command(dashboard_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``pollinate`` command line (``argv`` defaults to ``sys.argv[1:]``)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="pollinate")


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _report_error(err: PollinateError, verbose: bool) -> None:
    """``error: <message>``, with where the app's code raised the cause, if it did."""
    console = _stderr()
    cause = err.__cause__
    where = ""
    if cause is not None and not isinstance(cause, PollinateError):
        if verbose:
            console.print(_traceback(cause))
        frame = _innermost_app_frame(cause.__traceback__)
        where = f" (at {frame})" if frame else ""
    console.print(f"[bold red]error:[/] {escape(str(err))}{escape(where)}", soft_wrap=True)


def _report_crash(err: Exception) -> None:
    """The app's traceback, then one line saying what happened."""
    console = _stderr()
    console.print(_traceback(err))
    console.print(
        f"[bold red]error:[/] the app raised {type(err).__name__}: {escape(str(err))}",
        soft_wrap=True,
    )


def _traceback(err: BaseException) -> Traceback:
    """A short rich traceback that starts at the first frame outside pollinate and click."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None and _hidden(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return Traceback.from_exception(
        type(err),
        err,
        tb,
        extra_lines=1,
        max_frames=12,
        suppress=[pollinate, click],
    )


def _hidden(filename: str) -> bool:
    return filename.startswith(_HIDDEN_FRAMES)


def _innermost_app_frame(tb: TracebackType | None) -> str | None:
    """``file:line`` of the innermost frame in ``tb`` outside pollinate and click."""
    frames = [f for f in traceback.extract_tb(tb) if not _hidden(f.filename)]
    if not frames:
        return None
    return f"{shown(Path(frames[-1].filename))}:{frames[-1].lineno}"
