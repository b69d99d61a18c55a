"""``pollinate report``: a run's curves and HTML page, or a comparison of several runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import ConfigError
from ._display import shown

if TYPE_CHECKING:
    from ..report import Comparison


@click.command("report", short_help="Draw a run's curves, or compare runs, as PNG and HTML.")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Comparison: the folder for comparison.png and .html [default: the current folder].",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    help="Comparison: a threshold to report the first time each run reached; repeat it or "
    "give a comma list (0.8,0.85) [default: 0.5, 0.8, 0.9].",
)
@click.option(
    "--metric",
    default=None,
    help="Comparison: the metric --target applies to, e.g. evaluate.accuracy "
    "[default: server.accuracy, else evaluate.accuracy].",
)
def report_command(
    run_dirs: tuple[Path, ...], out: Path | None, targets: tuple[str, ...], metric: str | None
) -> None:
    """One RUN_DIR: write RUN_DIR/curves.png and RUN_DIR/report.html from its metrics.jsonl.

    A run with simulated time (a population) also gets RUN_DIR/curves-time.png: the same
    curves against simulated time.

    Two or more: compare them. comparison.png draws each metric the runs share, a line per
    run, against simulated time (when every run has it, else against rounds);
    comparison.html and the table printed say each run's final values, its simulated time
    and when it first reached each --target. Runs are labelled by the run-config values
    that differ between them (strategy=fedbuff).

    RUN_DIR is a run's folder, as `pollinate run` prints at the end
    (APP_DIR/runs/<date>-<time>-<run id>).
    """
    if len(run_dirs) == 1:
        if out is not None or targets or metric is not None:
            raise ConfigError(
                "--out, --target and --metric are for a comparison: give two or more run folders"
            )
        _report_one(run_dirs[0])
        return
    _compare(list(run_dirs), out or Path("."), _parse_targets(targets), metric)


def _report_one(run_dir: Path) -> None:
    from ..report import load_history, privacy_lines, stop_reason, write_report  # matplotlib

    files = write_report(run_dir)
    click.echo(f"curves: {shown(files.curves)}")
    if files.curves_time is not None:
        click.echo(f"curves against simulated time: {shown(files.curves_time)}")
    click.echo(f"report: {shown(files.html)}")
    reason = stop_reason(run_dir)
    if reason is not None:
        click.echo(f"stopped early: {reason}")
    for label, text in privacy_lines(load_history(run_dir)):  # none for a run without DP
        click.echo(f"{label}: {text}")


def _compare(
    run_dirs: list[Path], out: Path, targets: tuple[float, ...], metric: str | None
) -> None:
    from ..report import compare_runs  # matplotlib

    mine = [out / "comparison.png", out / "comparison.html"]
    replaced = [path for path in mine if path.is_file()]
    comparison = compare_runs(run_dirs, out, targets, metric)
    for note in comparison.notes:
        click.echo(f"note: {note}")
    if comparison.target_metric is not None:
        axis = "simulated time (round)" if comparison.against_time else "round"
        click.echo(f"to X: the first {axis} at which {comparison.target_metric} reached X")
    click.echo(_text_table(comparison))
    for name, path in (("curves", comparison.plot), ("report", comparison.html)):
        click.echo(f"{name}: {shown(path)}{' (replaced)' if path in replaced else ''}")


def _text_table(comparison: Comparison) -> str:
    """The comparison's table as aligned plain text: the label left, the numbers right."""
    header, rows = comparison.table()
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    )


def _parse_targets(values: tuple[str, ...]) -> tuple[float, ...]:
    """``("0.8,0.85", "0.9")`` -> ``(0.8, 0.85, 0.9)``; a word that is no number is refused."""
    targets = []
    for word in (w.strip() for value in values for w in value.split(",")):
        try:
            target = float(word)
        except ValueError:
            target = math.nan
        if not math.isfinite(target):
            raise ConfigError(f"--target {word!r} is not a number: give e.g. --target 0.85")
        targets.append(target)
    return tuple(targets)
