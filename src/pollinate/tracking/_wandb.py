"""Weights & Biases: config, per-round metrics and the final model; offline without a key."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ..context import UserConfigValue
from ..errors import ConfigError
from ._base import Tracker, import_extra, log

__all__ = ["WANDB_MODES", "WandbTracker"]

DEFAULT_PROJECT = "pollinate"
WANDB_MODES = ("online", "offline")

WandbMode = Literal["online", "offline"]


class WandbTracker(Tracker):
    """Sends a run to Weights & Biases: run config, metrics at step = round, ``model.npz``.

    ``mode`` is ``"online"`` or ``"offline"``; by default W&B's own ``WANDB_MODE`` if set,
    else online only when ``WANDB_API_KEY`` is set, so a machine without a key never
    reaches the network: the run is
    written under ``dir`` (``dir/wandb/offline-run-*``) for ``wandb sync`` later. wandb's
    console capture, system metrics and analytics stay off; its service process is shut
    down when the tracker ends, unless another W&B run in the process still uses it. It never
    prompts: online mode without credentials is a ConfigError.
    """

    kind = "wandb"

    def __init__(
        self,
        project: str = DEFAULT_PROJECT,
        *,
        entity: str | None = None,
        mode: WandbMode | None = None,
        dir: str | Path | None = None,
        run_name: str | None = None,
        run_config: Mapping[str, UserConfigValue] | None = None,
    ) -> None:
        super().__init__(run_config)
        wandb = import_extra("wandb", "wandb")
        self.mode: WandbMode = mode or _mode_from_environment()
        if self.mode not in WANDB_MODES:
            raise ConfigError(f"wandb mode must be 'online' or 'offline', got {self.mode!r}")
        self.dir = Path(dir) if dir is not None else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self._wandb: Any = wandb
        self._owns_service = wandb.run is None
        settings = self._settings()
        if self._owns_service:  # quiet, and offline from the start: no analytics threads
            wandb.setup(settings=settings)
        if self.mode == "online" and not wandb.login(prompt=False, verify=False):
            self._teardown()
            raise ConfigError(
                "wandb online mode needs credentials: set WANDB_API_KEY (or run wandb login), "
                'or choose mode = "offline"'
            )
        try:
            self._run: Any = wandb.init(
                project=project,
                entity=entity,
                name=run_name,
                dir=str(self.dir) if self.dir is not None else None,
                config=self.run_config,
                mode=self.mode,
                reinit="create_new",
                settings=settings,
            )
        except Exception as err:
            self._teardown()
            raise ConfigError(f"wandb could not start a run ({self.mode}): {err}") from None
        self._started()
        self.where = f"{self.mode}, {Path(self._run.dir).parent}"
        log.info("wandb: %s run %s in %s", self.mode, self._run.id, Path(self._run.dir).parent)

    def _settings(self) -> Any:
        """Quiet settings: no console capture (the live view owns it), stats or git probing."""
        return self._wandb.Settings(
            mode=self.mode,
            silent=True,
            console="off",
            x_disable_stats=True,
            disable_git=True,
            save_code=False,
            x_save_requirements=False,
        )

    def _log_resume(self, last_round: int) -> None:
        self._run.summary["pollinate/resumed-after-round"] = last_round

    def _log_round(self, server_round: int, scalars: Mapping[str, float]) -> None:
        self._run.log(dict(scalars), step=server_round)

    def _log_model(self, path: Path) -> None:
        artifact = self._wandb.Artifact("model", type="model")
        artifact.add_file(str(path), name=path.name)
        self._run.log_artifact(artifact)

    def _end(self, failed: bool) -> None:
        try:
            self._run.finish(exit_code=1 if failed else 0)
        finally:
            self._teardown()

    def _teardown(self) -> None:
        """Stop wandb's service process, if this tracker started it."""
        if self._owns_service:
            self._wandb.teardown()


def _mode_from_environment() -> WandbMode:
    """W&B's own ``WANDB_MODE`` when set, else online with ``WANDB_API_KEY``, else offline."""
    chosen = os.environ.get("WANDB_MODE", "").strip().lower()
    if chosen in ("offline", "dryrun"):
        return "offline"
    if chosen == "online":
        return "online"
    if chosen == "disabled":
        raise ConfigError(
            "WANDB_MODE=disabled turns W&B off: drop wandb from --track (or the app's "
            "[tool.pollinate.app.track]), or unset WANDB_MODE"
        )
    if chosen:
        raise ConfigError(f"WANDB_MODE={chosen!r} is not a W&B mode: online, offline or disabled")
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"
