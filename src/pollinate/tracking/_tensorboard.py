"""TensorBoard: each round's scalars in an event file, written with tensorboard alone (no TF)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..context import UserConfigValue
from ._base import Tracker, import_extra, log

__all__ = ["FLOAT32_MAX", "TensorBoardTracker"]

FLOAT32_MAX = 3.4028234663852886e38
"""The largest value TensorBoard's float32 scalars hold (beyond it, a warning and inf)."""


class TensorBoardTracker(Tracker):
    """Writes a run to TensorBoard event files under ``log_dir``.

    Each round's numbers become scalars at step = round (``train/loss``,
    ``evaluate/replies-failed``, ``round/wall-time-s``...); the run config is written once
    as a text table and as hparams. ``pollinate run --track tensorboard`` puts ``log_dir``
    in the run's folder, so ``tensorboard --logdir APP/runs`` compares runs. TensorBoard
    keeps no files, so the final model stays in the run's folder.
    """

    kind = "tensorboard"
    keeps_files = False

    def __init__(
        self, log_dir: str | Path, run_config: Mapping[str, UserConfigValue] | None = None
    ) -> None:
        super().__init__(run_config)
        self.log_dir = Path(log_dir)
        writer = import_extra("tensorboard.summary.writer.event_file_writer", "tensorboard")
        self._event = import_extra("tensorboard.compat.proto.event_pb2", "tensorboard").Event
        self._writer: Any = writer.EventFileWriter(str(self.log_dir))
        self._started()
        self.where = str(self.log_dir)
        log.info("tensorboard: writing to %s", self.log_dir)
        if self.run_config:
            self._guarded(self._log_config)

    def _log_config(self) -> None:
        """The run config as a text table (Text tab) and as hparams (HParams tab)."""
        text = import_extra("tensorboard.plugins.text.summary_v2", "tensorboard")
        hparams = import_extra("tensorboard.plugins.hparams.summary_v2", "tensorboard")
        rows = "\n".join(f"| {k} | {v} |" for k, v in self.run_config.items())
        self._write(0, text.text_pb("run-config", f"| key | value |\n|---|---|\n{rows}"))
        self._write(0, hparams.hparams_pb(self.run_config))
        self._writer.flush()

    def _log_resume(self, last_round: int) -> None:
        """A session restart at the next round: TensorBoard drops what a crash left after it."""
        session = import_extra("tensorboard.compat.proto.event_pb2", "tensorboard").SessionLog
        event = self._event(
            wall_time=time.time(),
            step=last_round + 1,
            session_log=session(status=session.START),
        )
        self._writer.add_event(event)

    def _log_round(self, server_round: int, scalars: Mapping[str, float]) -> None:
        scalar = import_extra("tensorboard.plugins.scalar.summary_v2", "tensorboard")
        for tag, value in scalars.items():
            if abs(value) <= FLOAT32_MAX:  # TensorBoard keeps float32: a larger one is left out
                self._write(server_round, scalar.scalar_pb(tag, value))
        self._writer.flush()

    def _log_model(self, path: Path) -> None:
        """Never called: TensorBoard keeps no files (``keeps_files`` is False)."""

    def _end(self, failed: bool) -> None:
        self._writer.close()

    def _write(self, step: int, summary: Any) -> None:
        self._writer.add_event(self._event(wall_time=time.time(), step=step, summary=summary))
