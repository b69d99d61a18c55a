"""The options several commands share, and the run folder's timestamp."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = [
    "VERBOSE",
    "app_options",
    "json_option",
    "out_option",
    "run_config_option",
    "timestamp",
    "verbose_option",
]

F = TypeVar("F", bound=Callable[..., Any])

VERBOSE = "pollinate.verbose"
"""The ``click.Context.meta`` key that tells the error handler to show tracebacks."""


def timestamp() -> str:
    """``YYYYmmdd-HHMMSS`` now, local time: how run folders begin their names."""
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


run_config_option = click.option(
    "--run-config",
    multiple=True,
    metavar='"KEY=VALUE ..."',
    help="Change values of the app's run config ([tool.pollinate.app.config]): "
    "space-separated key=value pairs.",
)

verbose_option = click.option(
    "-v", "--verbose", is_flag=True, help="Show INFO logs, and the traceback of an import error."
)


def out_option(default: str) -> Callable[[F], F]:
    """``--out DIR``: where a command writes its results (``default`` says where otherwise)."""
    return click.option(
        "--out",
        "out_dir",
        type=click.Path(file_okay=False, path_type=Path),
        help=f"Where to write the results (default: {default}).",
    )


def json_option(what: str) -> Callable[[F], F]:
    """``--json``: ``what`` as one JSON line on stdout, everything else on stderr."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help=f"{what} as one JSON line on stdout; everything else goes to stderr.",
    )


def app_options(command: F) -> F:
    """The arguments and options every command that runs an app takes: what to run, how."""
    for option in reversed(_APP_OPTIONS):
        command = option(command)
    return command


_APP_OPTIONS = (
    click.argument("app_dir", default=".", type=click.Path(path_type=Path)),
    click.argument("federation", required=False),
    run_config_option,
    click.option(
        "--federation-config",
        multiple=True,
        metavar='"KEY=VALUE ..."',
        help="Change the federation's settings: num-nodes, backend, num-workers, "
        "client-resources.num-cpus, client-resources.num-gpus.",
    ),
)
