"""Run reports: a run folder's metrics as curves (PNG) and one self-contained HTML page.

``write_report(run_dir)`` reads ``metrics.jsonl`` (and ``run.json`` when present), draws one
panel per metric (accuracy, loss, ...) with a line per phase (centralized ``server``,
federated ``evaluate``, ``train``), and writes ``curves.png`` and ``report.html`` (the PNG
embedded, so the page can be mailed or archived as one file); a differentially private
run's page also says the epsilon it spent. A run on a simulated clock (its rounds carry
``simulated_time_s``) also gets ``curves-time.png``: the same curves against simulated time.

``compare_runs(run_dirs, out_dir)`` answers "which run reached the target soonest?": one
panel per metric that every run has, a line per run (against simulated time when every run
has it, else against rounds), each run labelled by the run-config values that differ, and a
table of final values and of the first time each run reached each target, written to
``comparison.png`` and ``comparison.html``. matplotlib is imported only here.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .server._privacy import privacy_spent
from .server._progress import format_duration

__all__ = [
    "Comparison",
    "DEFAULT_TARGETS",
    "ReportFiles",
    "RunSummary",
    "compare_runs",
    "curves_figure",
    "load_history",
    "metric_series",
    "privacy_lines",
    "run_labels",
    "seconds_text",
    "simulated_times",
    "stop_reason",
    "write_report",
]

PHASES = ("server", "evaluate", "train")
_COLORS = {"server": "tab:blue", "evaluate": "tab:orange", "train": "tab:green"}
_HIDDEN = ("num-examples",)
_MAX_PANELS = 9
_DPI = 110
_TIME_UNITS = (("s", 1.0), ("min", 60.0), ("h", 3600.0), ("days", 86_400.0))
"""Simulated time's axis unit: the largest that keeps the run's span at two units or more."""


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """Where the report went (``curves_time``: None for a run without simulated time)."""

    curves: Path
    html: Path
    curves_time: Path | None = None


def load_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rounds of a run folder's ``metrics.jsonl``, in order."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist: give the folder of a run (APP_DIR/runs/<run>), which "
            "holds metrics.jsonl"
        )
    history = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            history.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} line {number} is not JSON: {err.msg}") from None
    return history


def metric_series(history: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{metric: {phase: [(round, value), ...]}}`` for every numeric metric in the history."""
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for record in history:
        for phase in PHASES:
            for name, value in _phase_metrics(record, phase).items():
                if name in _HIDDEN or not _is_number(value):
                    continue
                points = series.setdefault(name, {}).setdefault(phase, [])
                points.append((int(record["round"]), float(value)))
    return series


def simulated_times(history: list[dict[str, Any]]) -> dict[int, float]:
    """``{round: simulated seconds}`` for the rounds that carry ``simulated_time_s``."""
    return {
        int(record["round"]): float(record["simulated_time_s"])
        for record in history
        if _is_number(record.get("simulated_time_s"))
    }


def privacy_lines(history: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``[("privacy", "epsilon 2.91 at delta 1e-05 after 10 rounds")]``; none without DP."""
    train = {int(r["round"]): _phase_metrics(r, "train") for r in history if "round" in r}
    spent = privacy_spent(train)
    return spent.lines() if spent else []


def stop_reason(run_dir: str | Path) -> str | None:
    """Why the run ended before its planned rounds (run.json's ``stop_reason``), if it did."""
    reason = _run_record(Path(run_dir)).get("stop_reason")
    return reason if isinstance(reason, str) else None


def write_report(run_dir: str | Path) -> ReportFiles:
    """Write ``curves.png`` and ``report.html`` into ``run_dir``."""
    run_dir = Path(run_dir)
    history = load_history(run_dir)
    series = metric_series(history)
    curves = run_dir / "curves.png"
    curves_figure(series, _title(run_dir)).savefig(curves, dpi=_DPI)
    times = simulated_times(history)
    curves_time = run_dir / "curves-time.png" if times else None
    if curves_time is not None:
        curves_figure(series, _title(run_dir), times).savefig(curves_time, dpi=_DPI)
    page = run_dir / "report.html"
    page.write_text(_html(run_dir, history, series, curves, curves_time), encoding="utf-8")
    return ReportFiles(curves, page, curves_time)


def _phase_metrics(record: dict[str, Any], phase: str) -> dict[str, Any]:
    if phase == "server":
        return dict(record.get("server") or {})
    part = record.get(phase)
    metrics = part.get("metrics") if isinstance(part, dict) else None
    return dict(metrics) if isinstance(metrics, dict) else {}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _title(run_dir: Path) -> str:
    run = _run_record(run_dir)
    app = run.get("app", {}).get("name") if isinstance(run.get("app"), dict) else None
    return f"{app or 'run'} {run_dir.name}"


def _run_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def _ordered(names: list[str]) -> list[str]:
    """Accuracy and loss panels first, then the rest alphabetically."""
    first = [n for n in ("accuracy", "loss") if n in names]
    return first + sorted(n for n in names if n not in first)


def _time_axis(times: dict[int, float]) -> tuple[str, float]:
    """The unit simulated time is plotted in, and its seconds."""
    span = max(times.values(), default=0.0)
    unit = _TIME_UNITS[0]
    for candidate in _TIME_UNITS:
        if span >= 2 * candidate[1]:
            unit = candidate
    return unit


def curves_figure(
    series: dict[str, dict[str, list[tuple[int, float]]]],
    title: str,
    times: dict[int, float] | None = None,
) -> Any:
    """One panel per metric, against rounds, or against simulated time when ``times`` given.

    Against time, a round without one is left out of the curve. ``series`` is
    ``metric_series``'s; returns a ``matplotlib.figure.Figure`` (``Result.plot`` shows it too).
    """
    from matplotlib.ticker import MaxNLocator

    names = _ordered(list(series))[:_MAX_PANELS]
    fig, axes = _figure(len(names))
    unit, seconds = _time_axis(times) if times is not None else ("", 1.0)
    for ax, name in zip(axes.flat, names, strict=False):
        for phase, per_round in series[name].items():
            points: list[tuple[float, float]] = [
                (r if times is None else times[r] / seconds, v)
                for r, v in per_round
                if times is None or r in times
            ]
            if not points:
                continue
            xs, values = zip(*points, strict=True)
            ax.plot(xs, values, marker="o", label=phase, color=_COLORS[phase])
        if times is None:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name, parse_math=False)  # a metric's name is the nodes' text, not TeX
        ax.set_xlabel("round" if times is None else f"simulated time ({unit})")
        ax.set_ylabel(name, parse_math=False)
        ax.grid(alpha=0.3)
        ax.legend(title="measured on")
    _finish(fig, axes, title, "no metrics recorded" if not names else None)
    return fig


def _figure(panels: int) -> tuple[Any, Any]:
    """A figure with a grid of up to three panels a row, the unused ones hidden.

    Drawn with matplotlib's object API, so pyplot's backend (a notebook's) is left alone.
    """
    from matplotlib.figure import Figure

    columns = min(3, max(1, panels))
    rows = max(1, math.ceil(panels / columns))
    fig = Figure(figsize=(5 * columns, 3.6 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[panels:]:
        ax.set_visible(False)
    return fig, axes


def _finish(fig: Any, axes: Any, title: str, empty: str | None) -> None:
    """Title and lay out the figure; ``empty`` is said in its place when it has no panel."""
    if empty is not None:
        axes.flat[0].set_visible(True)
        axes.flat[0].text(0.5, 0.5, empty, ha="center", va="center")
        axes.flat[0].set_axis_off()
    fig.suptitle(title, parse_math=False)
    fig.tight_layout()


def _html(
    run_dir: Path,
    history: list[dict[str, Any]],
    series: dict[str, dict[str, list[tuple[int, float]]]],
    curves: Path,
    curves_time: Path | None,
) -> str:
    images = [(curves, "metrics per round")]
    if curves_time is not None:
        images.append((curves_time, "metrics against simulated time"))
    run = _run_record(run_dir)
    summary_rows: list[tuple[str, Any]] = [
        (key, run[key])
        for key in ("run_id", "status", "error", "num_rounds", "wall_time_s", "rounds_time_s")
        if key in run
    ]
    reason = stop_reason(run_dir)
    if reason is not None:
        summary_rows.append(("stopped early", reason))
    times = simulated_times(history)
    if times:
        summary_rows.append(("simulated time", seconds_text(max(times.values()))))
    summary_rows += privacy_lines(history)
    return _PAGE.format(
        title=html.escape(_title(run_dir)),
        summary=_table(["", ""], [[k, v] for k, v in summary_rows]),
        config=_table(["key", "value"], [[k, v] for k, v in _config(run).items()]),
        images="".join(_image(path, alt) for path, alt in images),
        rounds=_rounds_table(history, series),
    )


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _rounds_table(
    history: list[dict[str, Any]], series: dict[str, dict[str, list[tuple[int, float]]]]
) -> str:
    columns = [(phase, name) for name in _ordered(list(series)) for phase in series[name]]
    header = ["round", "train ok/failed", "evaluate ok/failed"] + [f"{p}.{n}" for p, n in columns]
    times = simulated_times(history)
    if times:
        header.insert(1, "simulated s")
    rows = []
    for record in history:
        cells: list[Any] = [record["round"], _counts(record, "train"), _counts(record, "evaluate")]
        if times:
            at = times.get(int(record["round"]))
            cells.insert(1, "" if at is None else f"{at:.6g}")
        for phase, name in columns:
            value = _phase_metrics(record, phase).get(name)
            cells.append(f"{value:.4g}" if _is_number(value) else "")
        rows.append(cells)
    return _table(header, rows)


def _counts(record: dict[str, Any], phase: str) -> str:
    part = record.get(phase)
    if not isinstance(part, dict):
        return ""
    return f"{part.get('ok', '?')}/{part.get('failed', '?')}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


DEFAULT_TARGETS = (0.5, 0.8, 0.9)
"""The thresholds a comparison reports when none is asked for."""
_COMPARED_PHASES = ("server", "evaluate")
_TARGET_DEFAULTS = ("server.accuracy", "evaluate.accuracy")


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One compared run: its label, rounds, ``{"server.accuracy": [(round, value)]}`` and clock."""

    run_dir: Path
    label: str
    rounds: int
    series: dict[str, list[tuple[int, float]]]
    times: dict[int, float]

    @property
    def simulated_time_s(self) -> float | None:
        """The run's total simulated time (its last round's), or None without a clock."""
        return max(self.times.values()) if self.times else None

    def final(self, metric: str) -> float | None:
        """The metric's value at the run's last round that measured it."""
        points = self.series.get(metric)
        return points[-1][1] if points else None

    def reached(self, metric: str, target: float) -> tuple[int, float | None] | None:
        """``(round, simulated s)`` of the first round at or past ``target``; None if never.

        A loss or error is past the target at or below it, any other metric at or above.
        """
        lower = _lower_is_better(metric)
        for server_round, value in self.series.get(metric, []):
            if (value <= target) if lower else (value >= target):
                return server_round, self.times.get(server_round)
        return None


@dataclass(frozen=True, slots=True)
class Comparison:
    """What ``compare_runs`` compared and wrote (``notes``: runs skipped, axes fallen back)."""

    runs: list[RunSummary]
    metrics: list[str]
    target_metric: str | None
    targets: tuple[float, ...]
    against_time: bool
    notes: list[str]
    plot: Path
    html: Path

    def table(self) -> tuple[list[str], list[list[str]]]:
        """The header and a row per run: rounds, simulated time, finals, first time at target."""
        header = ["run", "rounds", "simulated time"] + [f"final {m}" for m in self.metrics]
        header += [f"to {t:g}" for t in self.targets]
        rows = []
        for run in self.runs:
            total = run.simulated_time_s
            row = [run.label, str(run.rounds), "-" if total is None else seconds_text(total)]
            row += [_value_text(run.final(m)) for m in self.metrics]
            if self.target_metric is not None:
                row += [_reached_text(run.reached(self.target_metric, t)) for t in self.targets]
            rows.append(row)
        return header, rows


def compare_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path = ".",
    targets: tuple[float, ...] = (),
    metric: str | None = None,
) -> Comparison:
    """Compare two or more runs: write ``comparison.png`` and ``comparison.html`` to ``out_dir``.

    ``metric`` (default: server.accuracy, else evaluate.accuracy) is the one ``targets``
    (default: ``DEFAULT_TARGETS``) apply to. A run without rounds is skipped with a note.
    """
    runs, notes = _load_runs([Path(d) for d in run_dirs])
    metrics = _common_metrics(runs)
    target_metric = _target_metric(metrics, metric, bool(targets))
    lacking = [run.run_dir.name for run in runs if not run.times]
    against_time = not lacking
    if lacking and len(lacking) < len(runs):
        notes.append(f"no simulated time in {', '.join(lacking)}: the runs are compared by round")
    chosen = (tuple(sorted(set(targets))) or DEFAULT_TARGETS) if target_metric else ()
    out = _comparison_dir(Path(out_dir))
    plot, page = out / "comparison.png", out / "comparison.html"
    _plot_comparison(runs, metrics, plot, against_time, target_metric, chosen)
    result = Comparison(runs, metrics, target_metric, chosen, against_time, notes, plot, page)
    page.write_text(_comparison_html(result), encoding="utf-8")
    return result


def run_labels(run_dirs: list[Path]) -> dict[Path, str]:
    """Each run's label: the run-config values that differ between the runs (``strategy=fedbuff``).

    Runs of different apps are labelled with their app's name too; runs nothing tells
    apart by their folder's name.
    """
    records = {d: _run_record(d) for d in run_dirs}
    configs = {d: _config(r) for d, r in records.items()}
    apps = {d: _app_name(r) or "?" for d, r in records.items()}
    first = configs[run_dirs[0]]
    differing = [
        key
        for key in first
        if all(key in c for c in configs.values())
        and len({json.dumps(c[key], sort_keys=True) for c in configs.values()}) > 1
    ]
    many_apps = len(set(apps.values())) > 1
    labels = {}
    for d in run_dirs:
        parts = [apps[d]] if many_apps else []
        parts += [f"{key}={_config_text(configs[d][key])}" for key in differing]
        labels[d] = " ".join(parts) or d.name
    seen = list(labels.values())
    return {
        d: f"{label} ({d.name})" if seen.count(label) > 1 and label != d.name else label
        for d, label in labels.items()
    }


def seconds_text(seconds: float) -> str:
    """A simulated time to a tenth of a second: ``"21.2s"``, ``"1m 14.7s"``, ``"3h 05m"``."""
    if not math.isfinite(seconds) or seconds >= 3600:
        return format_duration(seconds)
    minutes, rest = divmod(round(seconds, 1), 60)
    return f"{rest:.1f}s" if not minutes else f"{int(minutes)}m {rest:04.1f}s"


def _load_runs(run_dirs: list[Path]) -> tuple[list[RunSummary], list[str]]:
    """The runs that have rounds, labelled, and a note for each one skipped."""
    resolved = [d.resolve() for d in run_dirs]
    twice = sorted({str(d) for d in run_dirs if resolved.count(d.resolve()) > 1})
    if twice:
        raise ConfigError(f"{', '.join(twice)} given twice: give each run once")
    histories = {d: load_history(d) for d in run_dirs}
    notes = [
        f"skipped {d}: its metrics.jsonl has no rounds (the run failed before its first round)"
        for d, history in histories.items()
        if not history
    ]
    kept = [d for d, history in histories.items() if history]
    if len(kept) < 2:
        raise ConfigError(
            f"a comparison needs two runs with rounds and {len(kept)} of the {len(run_dirs)} "
            "given have any (a run that failed before its first round has none): "
            + "; ".join(notes)
        )
    labels = run_labels(kept)
    return [_summary(d, labels[d], histories[d]) for d in kept], notes


def _summary(run_dir: Path, label: str, history: list[dict[str, Any]]) -> RunSummary:
    series = {
        f"{phase}.{name}": points
        for name, phases in metric_series(history).items()
        for phase, points in phases.items()
        if phase in _COMPARED_PHASES
    }
    rounds = max(int(record["round"]) for record in history)
    return RunSummary(run_dir, label, rounds, series, simulated_times(history))


def _common_metrics(runs: list[RunSummary]) -> list[str]:
    """The metrics every run has: server's first, accuracy and loss first within a phase."""
    common = set.intersection(*(set(run.series) for run in runs))
    return [
        f"{phase}.{name}"
        for phase in _COMPARED_PHASES
        for name in _ordered([m.split(".", 1)[1] for m in common if m.startswith(f"{phase}.")])
    ]


def _target_metric(metrics: list[str], metric: str | None, targets_given: bool) -> str | None:
    """The metric targets apply to; None when none was asked for and no accuracy is there."""
    available = ", ".join(metrics) or "none"
    if metric is not None:
        if metric not in metrics:
            raise ConfigError(
                f"--metric {metric}: not a metric every compared run has; they have: {available}"
            )
        return metric
    default = next((m for m in _TARGET_DEFAULTS if m in metrics), None)
    if default is None and targets_given:
        raise ConfigError(
            "--target applies to server.accuracy or evaluate.accuracy and the runs do not all "
            f"have either: name the metric with --metric (every run has: {available})"
        )
    return default


def _lower_is_better(metric: str) -> bool:
    return metric.endswith(("loss", "error"))


def _comparison_dir(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: give a folder for comparison.png and .html")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _config(record: dict[str, Any]) -> dict[str, Any]:
    config = record.get("run_config")
    return config if isinstance(config, dict) else {}


def _app_name(record: dict[str, Any]) -> str | None:
    app = record.get("app")
    name = app.get("name") if isinstance(app, dict) else None
    return name if isinstance(name, str) else None


def _config_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _value_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _reached_text(reached: tuple[int, float | None] | None) -> str:
    """``"21.2s (round 40)"``, ``"round 40"`` without a clock, ``"never"``."""
    if reached is None:
        return "never"
    server_round, at = reached
    return f"round {server_round}" if at is None else f"{seconds_text(at)} (round {server_round})"


def _plot_comparison(
    runs: list[RunSummary],
    metrics: list[str],
    path: Path,
    against_time: bool,
    target_metric: str | None,
    targets: tuple[float, ...],
) -> None:
    """One panel per common metric, a line per run; the targets dashed on their metric's."""
    from matplotlib.ticker import MaxNLocator

    names = metrics[:_MAX_PANELS]
    fig, axes = _figure(len(names))
    spans = {i: run.simulated_time_s or 0.0 for i, run in enumerate(runs)}
    unit, seconds = _time_axis(spans) if against_time else ("", 1.0)
    for ax, name in zip(axes.flat, names, strict=False):
        for run in runs:
            points = [
                (run.times[r] / seconds if against_time else r, v)
                for r, v in run.series[name]
                if not against_time or r in run.times
            ]
            if points:
                xs, values = zip(*points, strict=True)
                ax.plot(xs, values, label=run.label)
        for target in targets if name == target_metric else ():
            ax.axhline(target, color="gray", linestyle="--", linewidth=0.8)
        if not against_time:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name, parse_math=False)
        ax.set_xlabel(f"simulated time ({unit})" if against_time else "round")
        ax.set_ylabel(name, parse_math=False)
        ax.grid(alpha=0.3)
    if names:  # one legend, on the first panel, for every panel's lines
        legend = axes.flat[0].legend(title="run", fontsize="small")
        for text in legend.get_texts():  # labels are run config values: text, not TeX
            text.set_parse_math(False)
    title = " vs ".join(run.label for run in runs)
    title = title if len(title) <= 100 else f"{len(runs)} runs"
    _finish(fig, axes, title, "no metric common to every run" if not names else None)
    fig.savefig(path, dpi=_DPI)


def _comparison_html(comparison: Comparison) -> str:
    header, rows = comparison.table()
    header.insert(1, "folder")
    for run, row in zip(comparison.runs, rows, strict=True):
        row.insert(1, str(run.run_dir))
    axis = "simulated time" if comparison.against_time else "round"
    lines = [f"Curves against {axis}.", *comparison.notes]
    if comparison.target_metric is not None:
        lines.append(
            f'"to X": the first simulated time (and round) {comparison.target_metric} reached X.'
        )
    return _COMPARISON_PAGE.format(
        title=html.escape(f"{len(comparison.runs)} runs compared"),
        notes="".join(f"<p>{html.escape(line)}</p>" for line in lines),
        table=_table(header, rows),
        image=_image(comparison.plot, f"metrics against {axis}, a line per run"),
    )


_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }}
</style></head>
<body>
<h1>{title}</h1>
"""
"""How both pages start: their title and one style."""

_PAGE = (
    _HEAD
    + """<h2>Run</h2>{summary}
<h2>Run config</h2>{config}
<h2>Curves</h2>{images}
<h2>Rounds</h2>{rounds}
</body></html>
"""
)


_COMPARISON_PAGE = (
    _HEAD
    + """{notes}
<h2>Runs</h2>{table}
<h2>Curves</h2>{image}
</body></html>
"""
)
