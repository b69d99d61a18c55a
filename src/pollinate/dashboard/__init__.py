"""A small web dashboard: a run folder's curves and rounds, a link's runs and nodes, live.

Server-rendered pages (Jinja2, autoescaped), charts drawn as SVG on the server, and one
static script that refreshes the live parts. ``DashboardServer`` serves a list of routes
on 127.0.0.1 behind a token login; ``folder_routes`` makes the routes of a run folder (or
a folder of runs), ``link_routes`` those of a link, through a ``LinkView``.

Needs the ``dashboard`` extra (starlette, uvicorn, jinja2); ``import pollinate`` does not
import this package.
"""

from __future__ import annotations

from ..errors import ConfigError

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as err:  # pragma: no cover - the extra is installed in the test venv
    raise ConfigError(
        f"the dashboard needs {err.name}: pip install 'pollinate[dashboard]'"
    ) from err

from ._link import LinkView, link_routes
from ._runpages import folder_routes, run_routes
from ._server import DashboardServer

__all__ = ["DashboardServer", "LinkView", "folder_routes", "link_routes", "run_routes"]
