"""A link's pages: its runs and nodes, live, and a Stop button per unfinished run.

The pages read the link through a ``LinkView`` (in the link's process, or over its Control
service with the operator's credentials). Stopping a run is the only change they can make;
it is a POST with the session's CSRF token. All text from nodes and runs is escaped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..deploy import NodeStatus, RunSummary
from ..errors import PollinateError
from ._auth import csrf_ok
from ._pages import render
from ._runpages import MAX_CONFIG, RunPages

__all__ = ["LinkView", "link_routes"]

FINISHED = ("finished", "failed", "stopped")


class LinkView(Protocol):
    """A link as its dashboard sees it."""

    def runs(self) -> list[RunSummary]:
        """The link's runs, as ``pollinate ls`` lists them."""
        ...

    def nodes(self) -> Sequence[NodeStatus]:
        """The nodes the link knows."""
        ...

    def stop(self, run_id: int) -> None:
        """Stop a run; a PollinateError's message is shown to the user."""
        ...

    def run_dir(self, run: RunSummary) -> Path | None:
        """Where the run's files are, if this process can read them (and may)."""
        ...


def link_routes(view: LinkView) -> list[BaseRoute]:
    """The link's overview (``/``), its live fragment, a page per run, and Stop.

    The view is called from starlette's thread pool, never on the server's event loop: a
    view that asks a link over the network holds up no other page.
    """

    def overview(request: Request) -> Response:
        stopped = request.query_params.get("stopped", "")
        notice = f"run {stopped}: stop asked" if re.fullmatch(r"[0-9]{1,20}", stopped) else ""
        return render(request, "link.html", **_overview(view, notice=notice))

    def fragment(request: Request) -> Response:
        return render(request, "link_body.html", **_overview(view))

    async def stop(request: Request) -> Response:
        if not await csrf_ok(request):
            return render(request, "message.html", 403, message="Missing or wrong CSRF token.")
        run_id = _run_id(request)
        try:
            await run_in_threadpool(view.stop, run_id)
        except PollinateError as err:
            context = await run_in_threadpool(
                _overview, view, error=f"run {run_id} was not stopped: {err}"
            )
            return render(request, "link.html", 409, **context)
        # Back to the overview with a GET: a reload then shows the page, never posts again.
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/?stopped={run_id}", status_code=303)

    def folder(summary: RunSummary | None) -> Path | None:
        path = None if summary is None else view.run_dir(summary)
        return path if path is not None and path.is_dir() else None

    def locate(request: Request) -> Path | None:
        return folder(_summary(view.runs(), _run_id(request)))

    pages = RunPages(locate, lambda request: f"/runs/{_run_id(request)}")

    def run_page(request: Request) -> Response:
        summary = _summary(view.runs(), _run_id(request))
        if summary is None:
            return render(request, "message.html", 404, message="No such run on this link.")
        path = folder(summary)
        if path is None:
            return render(request, "link_run.html", summary=_run(summary))
        return pages.page_at(request, path)

    return [
        Route("/", overview),
        Route("/fragment/link", fragment),
        Route("/runs/{run_id:int}/stop", stop, methods=["POST"]),
        Route("/runs/{run_id:int}", run_page),
        Route("/runs/{run_id:int}/fragment", pages.fragment),
        Route("/runs/{run_id:int}/file/{path:path}", pages.download),
    ]


def _summary(runs: list[RunSummary], run_id: int) -> RunSummary | None:
    """The run ``run_id`` of ``runs``: one call to the view per page, not one per question."""
    return next((run for run in runs if run.run_id == run_id), None)


def _run_id(request: Request) -> int:
    value: int = request.path_params["run_id"]
    return value


def _overview(view: LinkView, error: str = "", notice: str = "") -> dict[str, Any]:
    try:
        runs, nodes = view.runs(), view.nodes()
    except PollinateError as err:
        return {"runs": [], "nodes": [], "error": f"the link did not answer: {err}", "notice": ""}
    return {
        "runs": [_run(r) for r in sorted(runs, key=lambda r: r.submitted_at, reverse=True)],
        "nodes": [_node(n) for n in sorted(nodes, key=lambda n: n.node_id)],
        "error": error,
        "notice": notice,
    }


def _run(run: RunSummary) -> dict[str, Any]:
    return {
        "id": run.run_id,
        "name": run.name,
        "status": run.status,
        "rounds_done": run.rounds_done,
        "submitted": run.submitted_at,
        "started": run.started_at,
        "ended": run.ended_at,
        "error": run.error or "",
        **_config(run.run_config),
        "stoppable": run.status not in FINISHED,
    }


def _node(node: NodeStatus) -> dict[str, Any]:
    failures = list(node.failures)[-5:]
    return {
        "id": node.node_id,
        "connected": node.connected,
        "last_seen": node.last_seen,
        "ago": None if node.last_seen is None else max(time.time() - node.last_seen, 0.0),
        "sent": node.tasks_sent,
        "done": node.tasks_done,
        "failed": node.tasks_failed,
        "failures": [(f.at, f.run_id, f.reason) for f in reversed(failures)],
        **_config(node.node_config or {}),
    }


def _config(config: Mapping[str, object]) -> dict[str, Any]:
    """At most ``MAX_CONFIG`` of a config's values, and how many more it has."""
    return {
        "config": dict(list(config.items())[:MAX_CONFIG]),
        "more_config": max(len(config) - MAX_CONFIG, 0),
    }
