"""``pollinate report``: a run folder's curves as PNG and one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import click

from ._display import shown


@click.command("report", short_help="Draw a run's curves and write an HTML report.")
@click.argument("run_dir", type=click.Path(path_type=Path))
def report_command(run_dir: Path) -> None:
    """Write RUN_DIR/curves.png and RUN_DIR/report.html from the run's metrics.jsonl.

    A run with simulated time (a population) also gets RUN_DIR/curves-time.png: the same
    curves against simulated time.

    RUN_DIR is a run's folder, as `pollinate run` prints at the end
    (APP_DIR/runs/<date>-<time>-<run id>).
    """
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
