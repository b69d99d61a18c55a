"""``pollinate compare``: the federated model against one model per node trained alone."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import __version__
from .._json import finite
from ..client import ClientApp
from ..compare import Comparison, PredictFn, require_plotting, run_comparison, write_comparison
from ..errors import AppError, ConfigError
from ..loader import load_object
from ..server import ServerApp
from ..server._progress import progress_view
from ._display import shown
from ._options import VERBOSE, app_options, json_option, out_option, verbose_option
from ._progress import cli_logging
from ._run import RunPlan, plan_run, population_model, stdout_to_stderr

__all__ = ["compare_command"]

TABLE_FILE = "comparison.json"


def _load_predict(plan: RunPlan) -> PredictFn:
    spec = plan.app.predict
    if spec is None:
        raise ConfigError(
            f"pollinate compare needs the app's predict function: add "
            f'predict = "{_predict_module(plan)}:predict" under '
            f"[tool.pollinate.app.components] in {plan.app.pyproject} "
            "(docs/compare.md shows what it returns)"
        )
    predict = load_object(spec, object, plan.app.app_dir.resolve())
    if not callable(predict):
        raise AppError(f"predict {spec!r} is a {type(predict).__name__}, expected a function")
    return cast(PredictFn, predict)


def _predict_module(plan: RunPlan) -> str:
    """Where ``predict`` most likely belongs: the app's ``task`` module, if it has one."""
    module = plan.app.serverapp.partition(":")[0]
    package = module.rpartition(".")[0]
    task = plan.app.app_dir / package.replace(".", "/") / "task.py"
    return f"{package}.task" if package and task.is_file() else module


def _compare(plan: RunPlan, stderr: Console) -> Comparison:
    app_dir = plan.app.app_dir.resolve()
    server_app = load_object(plan.app.serverapp, ServerApp, app_dir)
    predict = _load_predict(plan)
    if plan.federation.backend == "inline":  # fail before a folder exists
        load_object(plan.app.clientapp, ClientApp, app_dir)
    stderr.print("[bold]1/2[/] the federated model", highlight=False)
    with contextlib.closing(progress_view(stderr)) as view:
        view.status("starting")
        status = _Status(stderr)
        comparison = run_comparison(
            server_app,
            plan.app.clientapp,
            predict,
            num_nodes=plan.federation.num_nodes,
            backend=plan.federation.backend,
            backend_options=plan.federation.backend_options(),
            run_config=plan.run_config,
            app_dir=app_dir,
            out_dir=plan.out_dir,
            observers=[view],
            status=status,
            population=population_model(plan),
        )
    return comparison


class _Status:
    """Prints isolated training's progress as lines, after the federated run's view."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.said_header = False

    def __call__(self, text: str) -> None:
        if not self.said_header:
            self.console.print("[bold]2/2[/] one isolated model per partition", highlight=False)
            self.said_header = True
        self.console.print(f"  {escape(text)}", highlight=False)


def _about(plan: RunPlan, wall_time_s: float) -> dict[str, Any]:
    return {
        "app_dir": str(plan.app.app_dir.resolve()),
        "app": {"name": plan.app.name, "predict": plan.app.predict},
        "federation": plan.federation.to_json(),
        "run_config": plan.run_config,
        "wall_time_s": round(wall_time_s, 6),
        "pollinate_version": __version__,
    }


def _terminal_table(comparison: Comparison, width: int) -> Table:
    """The comparison's table for a terminal: the federated row bold, own-missing cells red."""
    table = comparison.table(max_subset_columns=max(1, (width - 32) // 15))
    view = Table(title="Test accuracy: isolated vs federated", title_justify="left")
    for number, name in enumerate(table.header):
        view.add_column(
            name.replace(" never saw ", " never saw\n"), justify="left" if number == 0 else "right"
        )
    for model, row in zip(comparison.models, table.rows, strict=True):
        cells = [f"[bold red]{escape(c.text)}[/]" if c.own else escape(c.text) for c in row]
        view.add_row(*cells, style="bold" if model.partition is None else None)
    return view


def _print_result(comparison: Comparison, plan: RunPlan, console: Console) -> None:
    console.print(_terminal_table(comparison, console.width))
    if comparison.label_counts is None:
        console.print(
            "Accuracy on missing labels needs the ClientApp to answer query.label-counts "
            "(docs/compare.md).",
            style="yellow",
        )
    elif comparison.missing_labels():
        console.print(
            "pN never saw: accuracy on the test labels partition N never trained on "
            "(red: a model on the labels it never trained on)",
            style="dim",
        )
    console.print(f"results: {escape(shown(plan.out_dir))}", soft_wrap=True)


_EXAMPLES = """\b
Examples:
  pollinate compare examples/quickstart
  pollinate compare examples/skewed-mnist --run-config "data-dir=/data/mnist"
  pollinate compare my-app --json | tail -n 1
"""


@click.command(
    "compare",
    short_help="Compare the federated model with models trained alone.",
    epilog=_EXAMPLES,
)
@app_options
@out_option("APP_DIR/runs/<date>-<time>-<id>-compare")
@json_option("End with the table")
@verbose_option
@click.pass_context
def compare_command(
    ctx: click.Context,
    app_dir: Path,
    federation: str | None,
    run_config: tuple[str, ...],
    federation_config: tuple[str, ...],
    out_dir: Path | None,
    as_json: bool,
    verbose: bool,
) -> None:
    """Train the app federated and, on each node's data alone, one isolated model per node.

    Every model gets the same local budget (rounds x local epochs) and is scored on the
    app's test set by its predict function ([tool.pollinate.app.components] predict). The
    table shows each model's accuracy overall and on each node's missing labels; the run
    folder gets comparison.md, comparison.json, curves.png and confusion/<model>.png.
    """
    ctx.meta[VERBOSE] = verbose
    require_plotting()  # before the training, not after it
    plan = plan_run(app_dir, federation, run_config, federation_config, out_dir, kind="compare")
    if (plan.out_dir / TABLE_FILE).exists():
        raise ConfigError(f"{str(plan.out_dir)!r} already holds a comparison: choose another --out")
    stderr = Console(stderr=True, highlight=False)
    stderr.print(
        f"[bold]{escape(plan.app.name)}[/]: federated vs isolated on "
        f"{escape(plan.federation.describe())}",
        soft_wrap=True,
    )
    began = time.perf_counter()
    quiet_stdout = stdout_to_stderr() if as_json else contextlib.nullcontext()
    with cli_logging(stderr, verbose), quiet_stdout:
        comparison = _compare(plan, stderr)
        write_comparison(comparison, plan.out_dir, _about(plan, time.perf_counter() - began))
    _print_result(comparison, plan, stderr if as_json else Console(highlight=False))
    if as_json:
        table = {"out_dir": str(plan.out_dir), **comparison.to_json()}
        click.echo(json.dumps(finite(table), separators=(",", ":")))
