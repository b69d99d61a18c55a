"""Trackers by name, as ``pollinate run --track`` and an app's pyproject enable them."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..context import UserConfigValue
from ..errors import ConfigError
from ._base import Tracker, missing_extra
from ._mlflow import DEFAULT_EXPERIMENT, MLflowTracker
from ._tensorboard import TensorBoardTracker
from ._wandb import DEFAULT_PROJECT, WANDB_MODES, WandbTracker

__all__ = ["TRACKER_OPTIONS", "make_tracker", "require_library"]

TRACKER_OPTIONS: dict[str, dict[str, type]] = {
    "tensorboard": {},
    "mlflow": {"tracking-uri": str, "experiment": str},
    "wandb": {"project": str, "entity": str, "mode": str},
}
"""Every tracker by name, and the options its pyproject table may set (with their types)."""


def require_library(name: str) -> None:
    """Refuse, before a run starts, a tracker whose library is not installed (ConfigError)."""
    try:
        found = importlib.util.find_spec(name) is not None
    except ValueError:  # a module set to None in sys.modules: as good as missing
        found = False
    if not found:
        raise missing_extra(name, name)


def make_tracker(
    name: str,
    out_dir: Path,
    run_config: Mapping[str, UserConfigValue],
    options: Mapping[str, Any] | None = None,
    *,
    app_dir: Path | None = None,
    app_name: str | None = None,
) -> Tracker:
    """The tracker ``name`` for the run whose folder is ``out_dir``, with its checked options.

    TensorBoard writes under ``out_dir/tensorboard``; MLflow to ``tracking-uri`` or a file
    store in ``APP_DIR/mlruns`` (beside the runs), experiment = the app's name; W&B under
    ``out_dir`` (offline without ``WANDB_API_KEY``), project = the app's name. Each names its
    run after the run's folder.
    """
    options = dict(options or {})
    if name not in TRACKER_OPTIONS:
        known = ", ".join(TRACKER_OPTIONS)
        raise ConfigError(f"unknown tracker {name!r}: choose {known}")
    unknown = sorted(set(options) - set(TRACKER_OPTIONS[name]))
    if unknown:
        known = ", ".join(TRACKER_OPTIONS[name]) or "none"
        raise ConfigError(f"tracker {name}: unknown option {unknown[0]!r}; known: {known}")
    try:
        return _made(name, out_dir, run_config, options, app_dir, app_name)
    except OSError as err:  # a folder it cannot make or write: the tracker's, not the app's
        raise ConfigError(
            f"tracker {name} cannot write where it keeps its files: {err.strerror or err}"
            + (f": {err.filename}" if err.filename else "")
        ) from None


def _made(
    name: str,
    out_dir: Path,
    run_config: Mapping[str, UserConfigValue],
    options: Mapping[str, Any],
    app_dir: Path | None,
    app_name: str | None,
) -> Tracker:
    """The tracker, its options checked already."""
    if name == "tensorboard":
        return TensorBoardTracker(out_dir / "tensorboard", run_config)
    if name == "mlflow":
        return MLflowTracker(
            options.get("tracking-uri"),
            experiment=options.get("experiment") or app_name or DEFAULT_EXPERIMENT,
            run_name=out_dir.name,
            run_config=run_config,
            store_dir=(app_dir if app_dir is not None else out_dir.parent) / "mlruns",
        )
    mode = options.get("mode")
    if mode is not None and mode not in WANDB_MODES:
        raise ConfigError(f"tracker wandb: mode must be 'online' or 'offline', got {mode!r}")
    return WandbTracker(
        options.get("project") or app_name or DEFAULT_PROJECT,
        entity=options.get("entity"),
        mode=mode,
        dir=out_dir,
        run_name=out_dir.name,
        run_config=run_config,
    )
