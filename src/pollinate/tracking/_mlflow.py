"""MLflow: params, per-round metrics and the final model, to a local store or a server."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..context import UserConfigValue
from ..errors import ConfigError
from ._base import Tracker, import_extra, log

__all__ = ["MLflowTracker"]

DEFAULT_EXPERIMENT = "pollinate"
MAX_PARAM_CHARS = 6000
"""MLflow's limit on a param's value; a longer one is cut (the run's files keep it whole)."""

_INVALID_KEY_CHARS = re.compile(r"[^\w\-. /]")
MAX_KEY_CHARS = 250
_ENV_LOCK = threading.Lock()


class MLflowTracker(Tracker):
    """Sends a run to MLflow: run config as params, metrics at step = round, ``model.npz``.

    ``tracking_uri`` is where (a server ``http://...``, ``sqlite:///...``, a folder); without
    one, a local file store in ``store_dir`` (default ``./mlruns``), which works offline and
    ``mlflow ui --backend-store-uri DIR`` shows. MLflow 3 keeps its file store only for those
    who opt in: this tracker opts in for the store it was given, not for the process. The
    run ends FINISHED with the result, FAILED when closed without one. A store that cannot
    be reached when the tracker starts is a ConfigError; later, a failure stops the tracker
    with one warning (after MLflow's own retries: ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``).
    """

    kind = "mlflow"

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        experiment: str = DEFAULT_EXPERIMENT,
        run_name: str | None = None,
        run_config: Mapping[str, UserConfigValue] | None = None,
        store_dir: str | Path = "mlruns",
    ) -> None:
        super().__init__(run_config)
        if not os.environ.get("DO_NOT_TRACK"):  # a run's tracker must not report on its user
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        mlflow = import_extra("mlflow", "mlflow")
        self._entities = import_extra("mlflow.entities", "mlflow")
        self.tracking_uri = tracking_uri or Path(store_dir).resolve().as_uri()
        try:
            self.run_id = self._start_run(mlflow, experiment, run_name)
        except Exception as err:  # a server out of reach, a store it cannot write
            raise ConfigError(
                f"mlflow could not start a run at {self.tracking_uri}: {type(err).__name__}: "
                f"{err}".splitlines()[0]
            ) from None
        self._started()
        self.where = f"{self.tracking_uri}, experiment {experiment}"
        log.info("mlflow: run %s at %s", self.run_id, self.tracking_uri)
        self._guarded(self._log_params)

    def _start_run(self, mlflow: Any, experiment: str, run_name: str | None) -> str:
        """Open the store, find or create the experiment, and create a run in it: its id."""
        with _file_store_allowed(self.tracking_uri):
            self._client: Any = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        with _quick_requests():  # a server out of reach: an error in seconds, not minutes
            found = self._client.get_experiment_by_name(experiment)
            experiment_id = (
                found.experiment_id if found else self._client.create_experiment(experiment)
            )
            run_id: str = self._client.create_run(experiment_id, run_name=run_name).info.run_id
        return run_id

    def _log_params(self) -> None:
        """The run config as params (values cut to MLflow's limit)."""
        params = [
            self._entities.Param(_key(k), str(v)[:MAX_PARAM_CHARS])
            for k, v in self.run_config.items()
        ]
        if params:
            self._client.log_batch(self.run_id, params=params)

    def _log_resume(self, last_round: int) -> None:
        self._client.set_tag(self.run_id, "pollinate.resumed-after-round", str(last_round))

    def _log_round(self, server_round: int, scalars: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        metrics = [self._entities.Metric(_key(k), v, now, server_round) for k, v in scalars.items()]
        if metrics:
            self._client.log_batch(self.run_id, metrics=metrics)

    def _log_model(self, path: Path) -> None:
        self._client.log_artifact(self.run_id, str(path))

    def _end(self, failed: bool) -> None:
        self._client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


def _key(name: str) -> str:
    """A metric or param name MLflow accepts, for any name a node or an app may choose.

    Characters it refuses become ``_``; it refuses ``..``, ``//`` and a leading or trailing
    ``/`` too, and names over 250 characters (cut, with a hash of the whole name so two long
    names stay apart).
    """
    key = _INVALID_KEY_CHARS.sub("_", name).replace("..", "__")
    key = "/".join(part for part in key.split("/") if part) or "_"
    if len(key) > MAX_KEY_CHARS:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        key = key[: MAX_KEY_CHARS - 13] + "-" + digest
    return key


@contextmanager
def _quick_requests() -> Iterator[None]:
    """MLflow's HTTP calls without its retries (about 4 minutes to give up), unless set."""
    settings = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    with _ENV_LOCK:
        added = [name for name in settings if name not in os.environ]
        os.environ.update({name: settings[name] for name in added})
        try:
            yield
        finally:
            for name in added:
                os.environ.pop(name, None)


@contextmanager
def _file_store_allowed(tracking_uri: str) -> Iterator[None]:
    """Let MLflow 3 open a file store for this URI: it refuses one unless opted in.

    MLflow builds a store once per URI and keeps it, so the opt-in is needed only while the
    client is made; the variable is put back as it was, the process's other clients unchanged.
    """
    if urllib.parse.urlparse(tracking_uri).scheme not in ("", "file"):
        yield
        return
    name = "MLFLOW_ALLOW_FILE_STORE"
    with _ENV_LOCK:
        saved = os.environ.get(name)
        os.environ[name] = "true"
        try:
            yield
        finally:
            if saved is None:
                del os.environ[name]
            else:
                os.environ[name] = saved
