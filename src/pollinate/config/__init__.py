"""An app's configuration: its ``pyproject.toml`` and the overrides a run is given.

``load_app_config(app_dir)`` reads the components, the run config and the federations, with
one clear ``ConfigError`` per mistake; ``resolve_run_config``, ``resolve_federation`` and
``resolve_deployment`` apply ``--run-config`` / ``--federation-config`` style overrides
(``parse_overrides``); ``resolve_trackers`` picks the trackers a run turns on. The CLI, the
tests and the benchmarks all read apps through here.
"""

from ._app import DEFAULT_FEDERATION as DEFAULT_FEDERATION
from ._app import AppConfig as AppConfig
from ._app import Deployment as Deployment
from ._app import Federation as Federation
from ._app import is_deployment as is_deployment
from ._app import load_app_config as load_app_config
from ._app import resolve_deployment as resolve_deployment
from ._app import resolve_federation as resolve_federation
from ._app import resolve_run_config as resolve_run_config
from ._overrides import Override as Override
from ._overrides import format_value as format_value
from ._overrides import parse_overrides as parse_overrides
from ._track import resolve_trackers as resolve_trackers

__all__ = [
    "AppConfig",
    "DEFAULT_FEDERATION",
    "Deployment",
    "Federation",
    "Override",
    "format_value",
    "is_deployment",
    "load_app_config",
    "parse_overrides",
    "resolve_deployment",
    "resolve_federation",
    "resolve_run_config",
    "resolve_trackers",
]
