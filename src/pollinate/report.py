"""Run reports: a run folder's metrics as curves (PNG) and one self-contained HTML page.

``write_report(run_dir)`` reads ``metrics.jsonl`` (and ``run.json`` when present), draws one
panel per metric (accuracy, loss, ...) with a line per phase (centralized ``server``,
federated ``evaluate``, ``train``), and writes ``curves.png`` and ``report.html`` (the PNG
embedded, so the page can be mailed or archived as one file); a differentially private
run's page also says the epsilon it spent. A run on a simulated clock (its rounds carry
``simulated_time_s``) also gets ``curves-time.png``: the same curves against simulated time.
matplotlib is imported only here.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .server._privacy import privacy_spent

__all__ = [
    "ReportFiles",
    "load_history",
    "metric_series",
    "privacy_lines",
    "simulated_times",
    "stop_reason",
    "write_report",
]

PHASES = ("server", "evaluate", "train")
_COLORS = {"server": "tab:blue", "evaluate": "tab:orange", "train": "tab:green"}
_HIDDEN = ("num-examples",)
_MAX_PANELS = 9
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
    _plot_curves(series, curves, _title(run_dir))
    times = simulated_times(history)
    curves_time = run_dir / "curves-time.png" if times else None
    if curves_time is not None:
        _plot_curves(series, curves_time, _title(run_dir), times)
    page = run_dir / "report.html"
    page.write_text(_html(run_dir, history, series, curves, curves_time), encoding="utf-8")
    return ReportFiles(curves, page, curves_time)


def _phase_metrics(record: dict[str, Any], phase: str) -> dict[str, Any]:
    if phase == "server":
        return dict(record.get("server") or {})
    part = record.get(phase) or {}
    return dict(part.get("metrics") or {})


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


def _plot_curves(
    series: dict[str, dict[str, list[tuple[int, float]]]],
    path: Path,
    title: str,
    times: dict[int, float] | None = None,
) -> None:
    """One panel per metric, against rounds, or against simulated time when ``times`` given.

    Against time, a round without one is left out of the curve.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = _ordered(list(series))[:_MAX_PANELS]
    columns = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
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
        ax.set_title(name)
        ax.set_xlabel("round" if times is None else f"simulated time ({unit})")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(title="measured on")
    if not names:
        axes.flat[0].set_visible(True)
        axes.flat[0].text(0.5, 0.5, "no metrics recorded", ha="center", va="center")
        axes.flat[0].set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    summary_rows += privacy_lines(history)
    return _PAGE.format(
        title=html.escape(_title(run_dir)),
        summary=_table(["", ""], [[k, v] for k, v in summary_rows]),
        config=_table(["key", "value"], [[k, v] for k, v in run.get("run_config", {}).items()]),
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
    return f"{part['ok']}/{part['failed']}" if isinstance(part, dict) else ""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_PAGE = """<!doctype html>
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
<h2>Run</h2>{summary}
<h2>Run config</h2>{config}
<h2>Curves</h2>{images}
<h2>Rounds</h2>{rounds}
</body></html>
"""
