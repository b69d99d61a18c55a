"""A link as its dashboard sees it: runs, nodes, stop, and where a run's files are.

Two views with the same four methods (the dashboard's ``LinkView``, matched by shape, so
deploy never imports the dashboard): ``LocalLinkView`` in the link's own process
(``pollinate link --dashboard``), ``ControlLinkView`` through the Control service with the
operator's credentials (``pollinate dashboard --link``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, NotFound
from ._control import ControlClient, RunSummary
from ._link import Link
from ._nodestats import NodeStatus
from ._runs import Runs

__all__ = ["ControlLinkView", "LocalLinkView"]


class LocalLinkView:
    """The link ``link`` and its ``runs``, in this process."""

    def __init__(self, link: Link, runs: Runs) -> None:
        self._link = link
        self._runs = runs

    def runs(self) -> list[RunSummary]:
        """Every run the link knows, oldest first."""
        return [RunSummary.of(row, done) for row, done in self._runs.rows()]

    def nodes(self) -> list[NodeStatus]:
        """Every node the link knows, by node id."""
        return self._link.node_status()

    def stop(self, run_id: int) -> None:
        """Stop the run as ``pollinate stop`` does; NotFound, or ConfigError if it had ended."""
        _check_known(run_id, [row.run_id for row, _ in self._runs.rows()])
        row = self._runs.stop(run_id)
        _check_stopped(row.run_id, row.status)

    def run_dir(self, run: RunSummary) -> Path | None:
        """The run's folder (None: a run that keeps no files)."""
        return _existing(run.out_dir)


class ControlLinkView:
    """A link through its Control service: ``client`` carries the operator's credentials.

    A run's folder is read only inside ``runs_dir``, the operator's own copy of the link's
    runs (a link on this host, a shared disk): the link names each run's folder, and a
    hostile one could name any folder of this machine. Without it, runs show their summary.
    """

    def __init__(self, client: ControlClient, runs_dir: Path | None = None) -> None:
        self._client = client
        self._runs_dir = None if runs_dir is None else runs_dir.resolve()

    def runs(self) -> list[RunSummary]:
        """Every run the link knows, oldest first."""
        return self._client.runs()

    def nodes(self) -> list[NodeStatus]:
        """Every node the link knows, by node id."""
        return self._client.list_nodes()

    def stop(self, run_id: int) -> None:
        """Stop the run through Control's StopRun; the link's refusal as a PollinateError."""
        _check_known(run_id, [run.run_id for run in self._client.runs()])
        run = self._client.stop(str(run_id))
        _check_stopped(run.run_id, run.status)

    def run_dir(self, run: RunSummary) -> Path | None:
        """The run's folder if it is inside ``runs_dir`` once resolved (None: no runs_dir)."""
        if self._runs_dir is None:
            return None
        path = _existing(run.out_dir)
        try:
            resolved = None if path is None else path.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return None
        return (
            resolved if resolved is not None and resolved.is_relative_to(self._runs_dir) else None
        )


def _check_known(run_id: int, run_ids: list[int]) -> None:
    """NotFound unless ``run_id`` is in ``run_ids``: the whole id, not its first digits."""
    if run_id not in run_ids:
        raise NotFound(f"no run {run_id} on this link (pollinate ls lists them)")


def _check_stopped(run_id: int, status: str) -> None:
    """Raise if a stop found the run ended already: the operator should know nothing stopped."""
    if status in ("finished", "failed"):
        raise ConfigError(f"run {run_id} had already ended: {status}")


def _existing(out_dir: str | None) -> Path | None:
    path = None if out_dir is None else Path(out_dir)
    return path if path is not None and path.is_dir() else None
