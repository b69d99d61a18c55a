"""``pollinate run``: run an app on a simulation federation, live, and keep its results."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from .. import __version__
from .._json import finite
from ..client import ClientApp
from ..config import (
    AppConfig,
    Federation,
    format_value,
    is_deployment,
    load_app_config,
    parse_overrides,
    resolve_deployment,
    resolve_federation,
    resolve_run_config,
    resolve_trackers,
)
from ..context import UserConfigValue
from ..errors import ConfigError
from ..loader import load_object
from ..server import Result, ServerApp
from ..server._privacy import privacy_spent
from ..server._progress import print_summary, progress_view
from ..simulation import Backend, PopulationModel, make_backend, run_simulation
from ..simulation._run import client_app_source
from ..tracking import Tracker, make_tracker
from ._control import submit_run
from ._dashboard import run_dashboard
from ._display import shown
from ._options import (
    VERBOSE,
    app_options,
    json_option,
    out_option,
    timestamp,
    verbose_option,
)
from ._progress import cli_logging

__all__ = ["RunPlan", "execute", "plan_run", "run_command"]

RUN_FILE = "run.json"


@dataclass(frozen=True, slots=True)
class RunPlan:
    """Everything a run needs, checked before anything starts."""

    app: AppConfig
    federation: Federation
    run_config: dict[str, UserConfigValue]
    run_id: int
    out_dir: Path
    checkpoints: bool = True
    trackers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The experiment trackers to send the run to, each with its options."""

    def overridden(self) -> dict[str, UserConfigValue]:
        """The run config values that differ from the app's defaults."""
        return {k: v for k, v in self.run_config.items() if self.app.run_config.get(k) != v}


def plan_run(
    app_dir: Path,
    federation: str | None,
    run_config: Sequence[str] = (),
    federation_config: Sequence[str] = (),
    out_dir: Path | None = None,
    kind: str = "",
) -> RunPlan:
    """Read the app's config and apply the overrides: every mistake is a ConfigError here.

    ``kind`` ends the default folder's name (``compare`` for a comparison).
    """
    run_overrides = parse_overrides(run_config, "--run-config")
    federation_overrides = parse_overrides(federation_config, "--federation-config")
    app = load_app_config(app_dir)
    config = resolve_run_config(app, run_overrides)
    chosen = resolve_federation(app, federation, federation_overrides)
    run_id = secrets.randbits(63)
    out = out_dir if out_dir is not None else _default_out_dir(app.app_dir, run_id, kind)
    if (out / RUN_FILE).exists() or (out / "metrics.jsonl").exists():
        raise ConfigError(f"{str(out)!r} already holds a run's results: choose another --out")
    return RunPlan(app, chosen, config, run_id, out.resolve())


def _default_out_dir(app_dir: Path, run_id: int, kind: str = "") -> Path:
    """``APP_DIR/runs/<YYYYmmdd-HHMMSS>-<last 8 hex digits of the run id>[-<kind>]``."""
    stamp = timestamp()
    suffix = f"-{kind}" if kind else ""
    return app_dir / "runs" / f"{stamp}-{run_id & 0xFFFFFFFF:08x}{suffix}"


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: Result
    wall_time_s: float
    tracked: tuple[str, ...] = ()
    """Where each tracker sent the run: ``mlflow: file:///.../mlruns, experiment app``."""


def execute(plan: RunPlan, stderr: Console) -> _Outcome:
    """Load the apps, run them with a live view, and write ``run.json`` however it ends."""
    population = population_model(plan)  # a mistake in its table fails before a run folder
    run_file = _RunFile(plan)
    app_dir = plan.app.app_dir.resolve()
    with contextlib.closing(progress_view(stderr)) as view, contextlib.ExitStack() as tracking:
        view.status("loading the app")
        backend = _launched_backend(plan, app_dir)
        try:
            server_app = load_object(plan.app.serverapp, ServerApp, app_dir)
            if plan.federation.backend == "inline":  # fail before a run folder exists
                load_object(plan.app.clientapp, ClientApp, app_dir)
            trackers = [tracking.enter_context(tracker) for tracker in _trackers(plan)]
        except BaseException:
            backend.close()
            raise
        view.status("starting")
        run_file.write("running")
        try:
            result = run_simulation(
                server_app,
                plan.app.clientapp,
                num_nodes=plan.federation.num_nodes,
                backend=backend,
                run_config=plan.run_config,
                app_dir=app_dir,
                out_dir=plan.out_dir,
                checkpoints=plan.checkpoints,
                observers=[view, *trackers],
                run_id=plan.run_id,
                verbose=False,  # the view above is this run's only one
                population=population,
            )
        except BaseException as err:
            run_file.write("failed", error=_reason(err))
            raise
    tracked = tuple(f"{tracker.kind}: {tracker.where}" for tracker in trackers)
    return _Outcome(result, run_file.write("finished", result), tracked)


def _trackers(plan: RunPlan) -> Iterator[Tracker]:
    """The plan's trackers, made one by one (each ends its run FAILED if the run fails)."""
    for name, options in plan.trackers.items():
        yield make_tracker(
            name,
            plan.out_dir,
            plan.run_config,
            options,
            app_dir=plan.app.app_dir,
            app_name=plan.app.name,
        )


def population_model(plan: RunPlan) -> PopulationModel | None:
    """The federation's population model, from its ``[...population]`` table (None: none).

    A trace named in the table is read relative to the app's folder.
    """
    table = plan.federation.population
    if table is None:
        return None
    return PopulationModel.from_config(table, base_dir=plan.app.app_dir)


def _launched_backend(plan: RunPlan, app_dir: Path) -> Backend:
    """The federation's backend, launched: its workers start up while this process imports.

    ``run_simulation`` then starts it with the very same ClientApp source, and only waits.
    """
    federation = plan.federation
    backend = make_backend(federation.backend, **federation.backend_options())
    source = client_app_source(
        plan.app.clientapp, None, app_dir, plan.run_id, federation.num_nodes, plan.run_config
    )
    backend.launch(source, federation.num_nodes)
    return backend


class _RunFile:
    """``run.json``: what runs, where, with which config; rewritten when the run ends."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.started_at = dt.datetime.now(dt.timezone.utc).astimezone().isoformat("T", "seconds")
        self.began = time.perf_counter()

    def write(self, status: str, result: Result | None = None, error: str | None = None) -> float:
        """Write the file with this status; returns the seconds since the run began."""
        plan, wall_time_s = self.plan, time.perf_counter() - self.began
        record = {
            "run_id": plan.run_id,
            "status": status,
            "error": error,
            "app_dir": str(plan.app.app_dir.resolve()),
            "app": {
                "name": plan.app.name,
                "serverapp": plan.app.serverapp,
                "clientapp": plan.app.clientapp,
            },
            "federation": plan.federation.to_json(),
            "run_config": plan.run_config,
            "started_at": self.started_at,
            "wall_time_s": round(wall_time_s, 6),
            "rounds_time_s": round(result.rounds_time_s, 6) if result else None,
            "num_rounds": _num_rounds(result) if result else None,
            "final": result.final_metrics() if result else {},
            "stop_reason": result.stop_reason if result else None,
            "pollinate_version": __version__,
        }
        plan.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = plan.out_dir / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(finite(record), indent=2) + "\n", encoding="utf-8")
        tmp.replace(plan.out_dir / RUN_FILE)
        return wall_time_s


def _num_rounds(result: Result) -> int:
    """Federated rounds run (round 0, the initial evaluation, does not count)."""
    return sum(record.server_round > 0 for record in result.rounds)


def _reason(err: BaseException) -> str:
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    return f"{type(err).__name__}: {err}".splitlines()[0]


def json_summary(plan: RunPlan, outcome: _Outcome) -> str:
    """The ``--json`` line: the run's id, folder, times, rounds, final metrics (and privacy).

    ``privacy`` is there only when the rounds reported it, so a run without DP keeps its line;
    ``stop_reason`` only when the run ended before its planned rounds (a privacy budget).
    """
    result = outcome.result
    payload = {
        "run_id": plan.run_id,
        "out_dir": str(plan.out_dir),
        "wall_time_s": round(outcome.wall_time_s, 6),
        "rounds_time_s": round(result.rounds_time_s, 6),
        "rounds": [record.to_json() for record in result.rounds],
        "final": result.final_metrics(),
    }
    spent = privacy_spent(result.metrics("train"))
    if spent is not None:
        payload["privacy"] = spent.to_json()
    if result.stop_reason is not None:
        payload["stop_reason"] = result.stop_reason
    return json.dumps(finite(payload), separators=(",", ":"))


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what the app and its worker processes print to stderr, keeping stdout clean."""
    sys.stdout.flush()
    try:
        saved: int | None = os.dup(1)
        os.dup2(2, 1)
    except OSError:
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _print_header(plan: RunPlan, stderr: Console) -> None:
    run = f"{plan.run_id & 0xFFFFFFFF:08x}"
    stderr.print(
        f"[bold]{escape(plan.app.name)}[/] on [bold]{escape(plan.federation.name)}[/] "
        f"({escape(plan.federation.describe())}), run {run}",
        soft_wrap=True,
    )
    changed = plan.overridden()
    if changed:
        values = " ".join(f"{k}={format_value(v)}" for k, v in changed.items())
        stderr.print(f"run config: {escape(values)}", soft_wrap=True, style="dim")


def _print_summary(plan: RunPlan, outcome: _Outcome, console: Console) -> None:
    print_summary(console, outcome.result, outcome.wall_time_s)
    files = ", ".join(p.name + ("/" if p.is_dir() else "") for p in sorted(plan.out_dir.iterdir()))
    console.print(f"  results: {escape(shown(plan.out_dir))} ({files})", soft_wrap=True)
    for tracked in outcome.tracked:
        console.print(f"  tracked in {escape(tracked)}", soft_wrap=True)


_EXAMPLES = """\b
Examples:
  pollinate run my-app --run-config "num-server-rounds=5 learning-rate=0.05"
  pollinate run my-app --federation-config "num-nodes=100 backend=process"
  pollinate run my-app --json | tail -n 1
  pollinate run my-app --federation prod --follow     # submit to a link
"""


@click.command("run", short_help="Run an app on a federation.", epilog=_EXAMPLES)
@app_options
@click.option("--federation", "federation_name", help="The federation, as the FEDERATION argument.")
@click.option(
    "-f",
    "--follow",
    "--stream",  # Flower's name (flwr run . --stream); a simulation always shows its rounds
    "follow",
    is_flag=True,
    help="On a deployed federation: print the run's log live (--stream is Flower's name).",
)
@out_option("APP_DIR/runs/<date>-<time>-<run id>")
@click.option(
    "--checkpoints/--no-checkpoints",
    default=True,
    help="Save the global model after every round under checkpoints/ (default: on).",
)
@click.option(
    "--track",
    "track",
    multiple=True,
    metavar="TRACKER",
    help="Send the run to tensorboard, mlflow or wandb (repeat it, or a comma list); "
    "besides those the app's [tool.pollinate.app.track] turns on.",
)
@click.option(
    "--dashboard", is_flag=True, help="Serve the run folder as a live web page while it runs."
)
@click.option(
    "--port", type=click.IntRange(0, 65535), help="The --dashboard's port [default: a free one]."
)
@json_option("Print the results")
@verbose_option
@click.pass_context
def run_command(
    ctx: click.Context,
    app_dir: Path,
    federation: str | None,
    run_config: tuple[str, ...],
    federation_config: tuple[str, ...],
    federation_name: str | None,
    follow: bool,
    out_dir: Path | None,
    checkpoints: bool,
    track: tuple[str, ...],
    dashboard: bool,
    port: int | None,
    as_json: bool,
    verbose: bool,
) -> None:
    """Run the app in APP_DIR (default: .) on FEDERATION (default: the app's default).

    The app's pyproject.toml names its ServerApp and ClientApp, its run config and its
    federations. On a simulation federation each round is shown as it finishes, and the
    results (metrics.jsonl, model.npz, run.json) go to APP_DIR/runs/ unless --out says
    otherwise. A deployed federation (one with an address) gets the app's code and run
    config, and runs it on its nodes: follow it with --follow or pollinate log.
    """
    ctx.meta[VERBOSE] = verbose
    if federation and federation_name and federation != federation_name:
        raise ConfigError(
            f"two federations given: {federation!r} and --federation {federation_name!r}"
        )
    federation = federation or federation_name
    if port is not None and not dashboard:
        raise ConfigError("--port is the dashboard's: add --dashboard")
    app = load_app_config(app_dir)
    if is_deployment(app, federation):
        if out_dir is not None:
            raise ConfigError("--out is for simulations: a deployed run's results stay on its link")
        if track:
            raise ConfigError(
                "--track is for simulations: a deployed run's rounds are on its link "
                "(pollinate log, or its run folder there)"
            )
        if dashboard:
            name = federation or app.default_federation
            raise ConfigError(
                "--dashboard is for simulations: watch a deployed run's link with "
                f"pollinate dashboard --app {app_dir} --federation {name}"
            )
        deployment = resolve_deployment(
            app, federation, parse_overrides(federation_config, "--federation-config")
        )
        config = resolve_run_config(app, parse_overrides(run_config, "--run-config"))
        submit_run(app, deployment, config, follow, as_json)
        return
    plan = plan_run(app_dir, federation, run_config, federation_config, out_dir)
    trackers = resolve_trackers(plan.app.track, track)
    plan = dataclasses.replace(plan, checkpoints=checkpoints, trackers=trackers)
    stderr = Console(stderr=True, highlight=False)
    _print_header(plan, stderr)
    for note in plan.app.notes:  # how the pyproject was read (a Flower app's, say): once
        stderr.print(f"note: {escape(note)}", soft_wrap=True, style="dim")
    quiet_stdout = stdout_to_stderr() if as_json else contextlib.nullcontext()
    served = run_dashboard(plan.out_dir, port or 0, stderr) if dashboard else None
    with cli_logging(stderr, verbose), quiet_stdout, served or contextlib.nullcontext():
        outcome = execute(plan, stderr)
    if as_json:
        click.echo(json_summary(plan, outcome))
    else:
        _print_summary(plan, outcome, Console(highlight=False))
