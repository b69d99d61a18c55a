"""Rendering: one Jinja2 environment with autoescape on for every template."""

from __future__ import annotations

import datetime as dt
import math
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

__all__ = ["STATIC_DIR", "clip", "duration", "iso_time", "render", "status_class", "when"]

STATIC_DIR = Path(__file__).parent / "static"
_TEMPLATES = Path(__file__).parent / "templates"
_STATUSES = frozenset(("running", "queued", "finished", "failed", "stopped", "unknown"))


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,  # every template, whatever its name: node text is hostile
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["duration"] = duration
    env.filters["iso_time"] = iso_time
    env.filters["clip"] = clip
    env.filters["status_class"] = status_class
    return env


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page or fragment from ``templates/``, with the title and the session's CSRF token.

    And ``root``, the server's secret path prefix: every link, form and asset starts with it;
    ``server_id``, which live.js expects in each fragment's answer.
    """
    page = (
        _environment()
        .get_template(template)
        .render(
            title=request.app.state.title,
            root=request.app.state.root,
            server_id=request.app.state.keys.server_id,
            csrf=getattr(request.state, "csrf", ""),
            **context,
        )
    )
    return HTMLResponse(page, status_code=status_code)


def when(seconds: float | None) -> str:
    """Unix seconds as local ``YYYY-mm-dd HH:MM:SS`` ("-" for None)."""
    if seconds is None:
        return "-"
    try:
        return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError, OSError):  # a hostile link's 1e300
        return "-"


def status_class(status: object) -> str:
    """The CSS class of a status: a known one, else ``other`` (a link or run.json says any)."""
    return status if isinstance(status, str) and status in _STATUSES else "other"


def clip(value: object, length: int) -> str:
    """``value`` as text of at most ``length`` characters (a node's reason may be huge)."""
    text = str(value)
    return text if len(text) <= length else text[: length - 1] + "…"


def iso_time(text: object) -> str:
    """An ISO 8601 time (run.json's ``started_at``) as local ``YYYY-mm-dd HH:MM:SS``."""
    if not isinstance(text, str):
        return "-"
    try:
        return dt.datetime.fromisoformat(text).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError):  # not a time, or one past what the OS takes
        return text


def duration(seconds: float | None) -> str:
    """Seconds as ``12.3 ms``, ``1.23 s``, ``4 min 05 s`` or ``2 h 03 min`` ("-": not finite)."""
    try:
        if seconds is None or not math.isfinite(seconds):
            return "-"
    except OverflowError:  # an int past 1e308
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
