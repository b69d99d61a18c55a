"""The pages of a run folder, and of a folder of runs: routes and what their templates get."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from ..server import RoundRecord
from ._charts import Series, line_chart
from ._pages import render
from ._runfolder import (
    DOWNLOADS,
    MAX_LISTED,
    RunFolder,
    finite_number,
    is_run,
    last_round,
    read_info,
    read_run,
    safe_file,
)

__all__ = ["MAX_CONFIG", "RunPages", "folder_routes", "run_body", "run_routes"]

_PHASES = ("server", "evaluate", "train")
_MAX_CHARTS = 12
_MAX_REASONS = 5
MAX_CONFIG = 200
"""Config values shown at most (a run's, a node's); the page says how many more there are."""
_CHARTS_KEPT = 8
"""Runs whose drawn charts are kept (per version of their metrics.jsonl)."""
_charts_kept: OrderedDict[tuple[str, int, int], dict[str, Any]] = OrderedDict()
_charts_lock = threading.Lock()

Locate = Callable[[Request], Path | None]


def run_routes(run_dir: Path) -> list[BaseRoute]:
    """The routes of one run folder, served at ``/`` (the folder may not exist yet)."""
    return RunPages(lambda request: run_dir, lambda request: "").routes("")


def folder_routes(path: Path) -> list[BaseRoute]:
    """A run folder's routes, or for a folder of runs (``APP/runs``) an index and each run's.

    An app's folder stands for its ``runs/``.
    """
    if is_run(path):
        return run_routes(path)
    root = path / "runs" if (path / "pyproject.toml").is_file() else path

    def locate(request: Request) -> Path | None:
        name: str = request.path_params["name"]
        child = root / name
        if "/" in name or name in ("", ".", "..") or not _real_run(child):
            return None
        return child

    def base(request: Request) -> str:
        return "/runs/" + quote(request.path_params["name"], safe="")

    def index(request: Request) -> Response:
        return render(request, "runs.html", **_index(root))

    def index_fragment(request: Request) -> Response:
        return render(request, "runs_body.html", **_index(root))

    return [
        Route("/", index),
        Route("/fragment/runs", index_fragment),
        *RunPages(locate, base).routes("/runs/{name}"),
    ]


@dataclass(frozen=True, slots=True)
class RunPages:
    """A run page, its live fragment and its downloads, for the run ``locate`` finds.

    The handlers are plain functions: starlette runs them in its thread pool, so reading
    files never holds up the server's event loop.
    """

    locate: Locate
    base: Callable[[Request], str]

    def routes(self, prefix: str) -> list[BaseRoute]:
        """The page at ``prefix`` (or ``/``), ``prefix/fragment`` and ``prefix/file/...``."""
        return [
            Route(prefix or "/", self.page),
            Route(f"{prefix}/fragment", self.fragment),
            Route(f"{prefix}/file/{{path:path}}", self.download),
        ]

    def page(self, request: Request) -> Response:
        """The whole page; its body refreshes itself."""
        return self.page_at(request, self.locate(request))

    def page_at(self, request: Request, path: Path | None) -> Response:
        """The whole page of the run folder ``path``, located already."""
        if path is None:
            return render(request, "message.html", 404, message="No such run here.")
        return render(request, "run.html", base=self.base(request), **run_body(path))

    def fragment(self, request: Request) -> Response:
        """The page's live part."""
        path = self.locate(request)
        if path is None:
            return render(request, "message_body.html", 404, message="No such run here.")
        return render(request, "run_body.html", base=self.base(request), **run_body(path))

    def download(self, request: Request) -> Response:
        """A checkpoint, the model or a plot: only files inside the run folder."""
        path = self.locate(request)
        target = None if path is None else safe_file(path, request.path_params["path"])
        if target is None:
            return render(request, "message.html", 404, message="No such file in this run.")
        kind = DOWNLOADS[target.suffix]
        disposition = "inline" if target.suffix == ".png" else "attachment"
        return FileResponse(
            target, media_type=kind, filename=target.name, content_disposition_type=disposition
        )


def run_body(path: Path) -> dict[str, Any]:
    """What ``run_body.html`` shows of the run folder at ``path``."""
    version = _version(path / "metrics.jsonl")  # before reading: a stale key only redraws
    run = read_run(path)
    info = run.info or {}
    app = info.get("app") if isinstance(info.get("app"), dict) else {}
    federation = info.get("federation") if isinstance(info.get("federation"), dict) else {}
    config = info.get("run_config") if isinstance(info.get("run_config"), dict) else {}
    return {
        "run": run,
        "name": path.name,
        "app_name": (app or {}).get("name", "-"),
        "federation": (federation or {}).get("name", "-"),
        "run_config": dict(list((config or {}).items())[:MAX_CONFIG]),
        "more_config": max(len(config or {}) - MAX_CONFIG, 0),
        **_charts(run, version),
        "rows": [_row(r) for r in reversed(run.rounds[-MAX_LISTED:])],
        "last_round": run.rounds[-1].server_round if run.rounds else None,
    }


def _version(file: Path) -> tuple[str, int, int] | None:
    """Which version of ``metrics.jsonl`` this is: its path, size and mtime (None: unreadable)."""
    try:
        stat = file.stat()
    except OSError:
        return None
    return str(file), stat.st_size, stat.st_mtime_ns


def _charts(run: RunFolder, version: tuple[str, int, int] | None) -> dict[str, Any]:
    """The run's charts, drawn once per version of its metrics.jsonl (every tab shares them)."""
    if version is not None:
        with _charts_lock:
            if version in _charts_kept:
                _charts_kept.move_to_end(version)
                return _charts_kept[version]
    charts = {
        "charts": _metric_charts(run.rounds, "round"),
        "time_charts": _metric_charts(run.rounds, "simulated time (s)")
        if run.simulated_time_s is not None
        else [],
        "duration_chart": _duration_chart(run.rounds),
    }
    if version is not None:
        with _charts_lock:
            _charts_kept[version] = charts
            while len(_charts_kept) > _CHARTS_KEPT:
                _charts_kept.popitem(last=False)
    return charts


def _metric_charts(rounds: list[RoundRecord], axis: str) -> list[str]:
    """A chart per metric (the first ``_MAX_CHARTS`` names), a line per phase.

    x is the round, or the simulated time. Only the charted metrics' points are collected.
    """
    names: set[str] = set()
    for record in rounds:
        for _, metrics in _phases(record):
            names.update(metrics)
    charted = sorted(n for n in names if not n.endswith("num-examples"))[:_MAX_CHARTS]
    lines: dict[str, dict[str, list[tuple[float, float]]]] = {name: {} for name in charted}
    for record in rounds:
        x = float(record.server_round) if axis == "round" else record.simulated_time_s
        if x is None:
            continue
        for phase, metrics in _phases(record):
            for name in charted:
                y = finite_number(metrics.get(name))
                if y is not None:
                    lines[name].setdefault(phase, []).append((x, y))
    return [
        line_chart(name, [Series(p, tuple(by_phase[p]), i) for i, p in _phases_in(by_phase)], axis)
        for name, by_phase in lines.items()
        if by_phase
    ]


def _phases_in(by_phase: dict[str, Any]) -> list[tuple[int, str]]:
    """The phases a metric has, each with its colour: the same in every chart."""
    return [(i, phase) for i, phase in enumerate(_PHASES) if phase in by_phase]


def _phases(record: RoundRecord) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = [("server", record.server_metrics)]
    if record.evaluate is not None:
        found.append(("evaluate", record.evaluate.metrics))
    if record.train is not None:
        found.append(("train", record.train.metrics))
    return found


def _duration_chart(rounds: list[RoundRecord]) -> str:
    points = tuple((float(r.server_round), r.wall_time_s) for r in rounds if r.server_round > 0)
    return line_chart("round duration", [Series("wall time", points)], "round", "seconds")


def _row(record: RoundRecord) -> dict[str, Any]:
    reasons = [
        f"{phase}: {failure}"
        for phase, part in (("train", record.train), ("evaluate", record.evaluate))
        if part is not None
        for failure in part.failures
    ]
    return {
        "round": record.server_round,
        "wall_time_s": record.wall_time_s,
        "simulated_time_s": record.simulated_time_s,
        "train": record.train,
        "evaluate": record.evaluate,
        "reasons": reasons[:_MAX_REASONS],
        "more_reasons": max(len(reasons) - _MAX_REASONS, 0),
    }


def _index(root: Path) -> dict[str, Any]:
    """The runs in ``root``, newest first (names start with their date)."""
    try:
        children = sorted((p for p in root.iterdir() if _real_run(p)), reverse=True)
    except OSError as err:
        return {"runs": [], "folder": str(root), "problem": f"cannot list it: {err.strerror}"}
    runs = []
    for child in children[:MAX_LISTED]:
        problems: list[str] = []
        info = read_info(child, problems) or {}
        app = info.get("app") if isinstance(info.get("app"), dict) else {}
        runs.append(
            {
                "name": child.name,
                "href": "/runs/" + quote(child.name, safe=""),
                "status": info.get("status", "unknown"),
                "app": (app or {}).get("name", "-"),
                "started": info.get("started_at", "-"),
                "last_round": last_round(child),
                "final": _final(info.get("final")),
                "problem": "; ".join(problems),
            }
        )
    return {"runs": runs, "folder": str(root), "problem": ""}


def _real_run(path: Path) -> bool:
    """A run folder that is no symlink: a link could lead the dashboard out of the folder."""
    return not path.is_symlink() and path.is_dir() and is_run(path)


def _final(final: object) -> str:
    if not isinstance(final, dict):
        return ""
    shown = [
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in final.items()
        if not str(k).endswith("num-examples")
    ]
    return ", ".join(shown[:3])
