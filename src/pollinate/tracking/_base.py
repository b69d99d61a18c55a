"""What every tracker shares: the round's scalars, the lazy import, and failing softly.

A tracker is a RunObserver. It never stops a run: the run's own files are the source of
truth, so a tracker that fails (a full disk, a server out of reach) logs one warning and
hears nothing more. Its run ends FINISHED when the run reports its result, FAILED when it
is closed without one (``with tracker:`` around a run that raises, ``close(failed=True)``,
or the process exiting with it still open).
"""

from __future__ import annotations

import abc
import atexit
import importlib
import logging
import math
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from ..context import UserConfigValue
from ..errors import ConfigError
from ..server import Result, RoundRecord, RunObserver, save_arrays

__all__ = ["Tracker", "import_extra", "log", "missing_extra", "round_scalars"]

log = logging.getLogger("pollinate.tracking")

MODEL_FILE = "model.npz"


def import_extra(module: str, extra: str) -> ModuleType:
    """Import a tracker's library; missing, it is one ConfigError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_extra(module, extra) from None


def missing_extra(module: str, extra: str) -> ConfigError:
    """The error for a tracker whose library is not installed: the extra that installs it."""
    return ConfigError(
        f"tracking with {extra} needs {module.split('.')[0]}, which is not installed: "
        f"pip install 'pollinate[{extra}]'"
    )


def round_scalars(record: RoundRecord) -> dict[str, float]:
    """The round's numbers by name: ``train/loss``, ``evaluate/replies-failed``, ``server/...``.

    Every number among the metrics (lists and bools left out) and the replies kept and set aside per
    phase, the round's wall time and the simulated clock when the run keeps one. A value
    that is NaN or infinite is left out: trackers' servers refuse it, and ``metrics.jsonl``
    keeps it (as null).
    """
    values: dict[str, Any] = {"round/wall-time-s": record.wall_time_s}
    if record.simulated_time_s is not None:
        values["round/simulated-time-s"] = record.simulated_time_s
    for phase, part in (("train", record.train), ("evaluate", record.evaluate)):
        if part is not None:
            values.update({f"{phase}/{k}": v for k, v in part.metrics.items()})
            values[f"{phase}/replies-ok"] = part.num_ok
            values[f"{phase}/replies-failed"] = part.num_failed
    values.update({f"server/{k}": v for k, v in record.server_metrics.items()})
    return {key: float(v) for key, v in values.items() if _is_finite_number(v)}


def _is_finite_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


class Tracker(RunObserver):
    """A RunObserver that sends a run to an experiment tracker; subclasses do the sending.

    Subclasses implement ``_log_round``, ``_log_resume``, ``_log_model`` and ``_end``; this
    class guards each call (a failure disables the tracker with one warning) and ends the
    tracker's run once, FINISHED with the result or FAILED without it.
    """

    kind = "tracker"
    """The tracker's name in warnings: ``tensorboard``, ``mlflow``, ``wandb``."""
    keeps_files = True
    """Whether the tracker keeps the final model (TensorBoard does not)."""
    where = ""
    """Where the run went, for people: a folder, a tracking URI and experiment."""

    def __init__(self, run_config: Mapping[str, UserConfigValue] | None = None) -> None:
        self.run_config = dict(run_config or {})
        self.disabled = False
        self.closed = True  # until the subclass has started its run (``_started``)

    def on_resume(self, last_round: int) -> None:
        """The run carries on after ``last_round``: steps go on from there."""
        self._guarded(lambda: self._log_resume(last_round))

    def on_round(self, record: RoundRecord) -> None:
        """Send the round's scalars, at step = the round's number."""
        scalars = round_scalars(record)
        self._guarded(lambda: self._log_round(record.server_round, scalars))

    def on_result(self, result: Result) -> None:
        """Send the final model and end the tracker's run as finished."""
        if self.keeps_files:
            self._guarded(lambda: self._with_model_file(result, self._log_model))
        self.close()

    def close(self, failed: bool = False) -> None:
        """End the tracker's run (FAILED with ``failed``); later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self._at_exit)
        try:
            self._end(failed or self.disabled)
        except Exception as err:  # best effort: the run's files hold everything
            # A disabled tracker warned once already; its end failing too is no news.
            level = logging.DEBUG if self.disabled else logging.WARNING
            log.log(level, "%s: could not end its run: %s", self.kind, err)

    def _started(self) -> None:
        """The tracker's run is open: from now on it must end, if need be at exit (FAILED)."""
        self.closed = False
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        """The process ends with the tracker's run open: the run never reported a result."""
        self.close(failed=True)

    def __enter__(self) -> Tracker:
        """Use as ``with tracker:`` so that a run that raises ends as FAILED."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """End the tracker's run: FAILED when the block raised, else as it stands."""
        self.close(failed=exc is not None)

    def _guarded(self, call: Callable[[], None]) -> None:
        """Run ``call`` unless disabled; a failure disables the tracker, with one warning."""
        if self.disabled or self.closed:
            return
        try:
            call()
        except Exception as err:
            self.disabled = True
            log.warning(
                "%s tracking stopped: %s: %s (the run goes on; its own files keep every round)",
                self.kind,
                type(err).__name__,
                err,
            )

    @staticmethod
    def _with_model_file(result: Result, send: Callable[[Path], None]) -> None:
        """Save the final model as ``model.npz`` in a temporary folder and ``send`` it."""
        with tempfile.TemporaryDirectory(prefix="pollinate-model-") as folder:
            path = Path(folder) / MODEL_FILE
            save_arrays(result.arrays, path)
            send(path)

    def _log_resume(self, last_round: int) -> None:
        """Mark that the run carries on after ``last_round`` (default: nothing to mark)."""

    @abc.abstractmethod
    def _log_round(self, server_round: int, scalars: Mapping[str, float]) -> None:
        """Send one round's scalars at step ``server_round``."""

    @abc.abstractmethod
    def _log_model(self, path: Path) -> None:
        """Send the final model (a ``model.npz`` file) where the tracker keeps files."""

    @abc.abstractmethod
    def _end(self, failed: bool) -> None:
        """End the tracker's run, as failed or finished, and let go of what it holds."""
