"""What a run produced: per-round metrics, failures, times, and the final model."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from .._durable import append_line, write_file
from .._json import finite
from ..errors import ConfigError
from ..records import ArrayRecord

__all__ = [
    "Failure",
    "PhaseResult",
    "Result",
    "RoundRecord",
    "load_arrays",
    "save_arrays",
]

Phase = Literal["train", "evaluate", "server"]


@dataclass(frozen=True, slots=True)
class Failure:
    """A reply set aside: which node, and why."""

    node_id: int
    reason: str

    def __str__(self) -> str:
        return f"node {self.node_id}: {self.reason}"


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """One phase (train or evaluate) of one round: aggregated metrics and reply accounting."""

    metrics: Mapping[str, Any]
    num_ok: int
    failures: tuple[Failure, ...] = ()

    @property
    def num_failed(self) -> int:
        """How many replies were set aside."""
        return len(self.failures)

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> PhaseResult:
        """The phase ``to_json`` wrote."""
        failures = []
        for text in payload.get("failures", []):
            node, _, reason = str(text).partition(": ")
            failures.append(Failure(int(node.removeprefix("node ")), reason))
        return cls(dict(payload["metrics"]), int(payload["ok"]), tuple(failures))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "ok": self.num_ok,
            "failed": self.num_failed,
            "metrics": dict(self.metrics),
            "failures": [str(f) for f in self.failures],
        }


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """Everything one round produced. Round 0 holds only the initial centralized evaluation.

    ``simulated_time_s`` is the grid's simulated clock when the record was made (None: the
    grid keeps none, wall time rules).
    """

    server_round: int
    train: PhaseResult | None = None
    evaluate: PhaseResult | None = None
    server_metrics: Mapping[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    simulated_time_s: float | None = None

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> RoundRecord:
        """The round ``to_json`` wrote (a line of ``metrics.jsonl``)."""
        train, evaluate = payload.get("train"), payload.get("evaluate")
        return cls(
            int(payload["round"]),
            PhaseResult.from_json(train) if train else None,
            PhaseResult.from_json(evaluate) if evaluate else None,
            dict(payload.get("server") or {}),
            float(payload.get("wall_time_s", 0.0)),
            _optional_float(payload.get("simulated_time_s")),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, one line of ``metrics.jsonl`` (simulated time only when kept)."""
        line: dict[str, Any] = {
            "round": self.server_round,
            "wall_time_s": round(self.wall_time_s, 6),
        }
        if self.simulated_time_s is not None:
            line["simulated_time_s"] = self.simulated_time_s
        line.update(
            train=self.train.to_json() if self.train else None,
            evaluate=self.evaluate.to_json() if self.evaluate else None,
            server=dict(self.server_metrics),
        )
        return line


@dataclass(slots=True)
class Result:
    """The history of a run and its final global model."""

    arrays: ArrayRecord
    rounds: list[RoundRecord] = field(default_factory=list)
    strategy_state: ArrayRecord = field(default_factory=ArrayRecord)
    """What the strategy kept after the last round (empty if it keeps nothing)."""
    stop_reason: str | None = None
    """Why the run ended before its planned rounds (a privacy budget); None if it ran them."""

    def metrics(self, phase: Phase) -> dict[int, dict[str, Any]]:
        """Metrics per round of one phase: ``"train"``, ``"evaluate"`` (nodes) or ``"server"``."""
        out: dict[int, dict[str, Any]] = {}
        for record in self.rounds:
            if phase == "server":
                values: Mapping[str, Any] | None = record.server_metrics or None
            else:
                part = record.train if phase == "train" else record.evaluate
                values = part.metrics if part else None
            if values:
                out[record.server_round] = dict(values)
        return out

    @property
    def simulated_time_s(self) -> float | None:
        """The simulated clock at the last round that kept one (None: no simulated time)."""
        times = [r.simulated_time_s for r in self.rounds if r.simulated_time_s is not None]
        return times[-1] if times else None

    @property
    def rounds_time_s(self) -> float:
        """Wall time of the federated rounds, summed (round 0's evaluation excluded)."""
        return sum(r.wall_time_s for r in self.rounds if r.server_round > 0)

    def __repr__(self) -> str:
        """A short summary: rounds, model size and the last round's metrics, not a dump."""
        done = sum(1 for r in self.rounds if r.server_round > 0)
        size = sum(a.nbytes for a in self.arrays.values())
        final = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in self.final_metrics().items()
            if isinstance(v, (int, float)) and not k.endswith("num-examples")
        )
        return (
            f"Result({done} round{'' if done == 1 else 's'}, {len(self.arrays)} arrays of "
            f"{size:,} bytes{', ' + final if final else ''})"
        )

    def plot(self, against_time: bool = False) -> Any:
        """The run's curves, a panel per metric, as a ``matplotlib.figure.Figure``.

        Against simulated time with ``against_time`` (a run on a simulated clock). Drawn by
        ``pollinate report``'s code, imported here only when asked (it needs matplotlib).
        """
        if importlib.util.find_spec("matplotlib") is None:
            raise ConfigError("plotting a run needs matplotlib: pip install 'pollinate[plot]'")
        from .. import report

        history = [record.to_json() for record in self.rounds]
        times = report.simulated_times(history) if against_time else None
        if against_time and not times:
            raise ConfigError("this run has no simulated time: plot it against rounds")
        return report.curves_figure(report.metric_series(history), "run", times)

    def final_metrics(self) -> dict[str, Any]:
        """The last round's metrics, prefixed by phase: ``evaluate.accuracy``, ``server.loss``."""
        out: dict[str, Any] = {}
        phases: tuple[Phase, ...] = ("train", "evaluate", "server")
        for phase in phases:
            per_round = self.metrics(phase)
            if per_round:
                last = per_round[max(per_round)]
                out.update({f"{phase}.{k}": v for k, v in last.items()})
        return out


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def save_arrays(arrays: ArrayRecord, path: Path) -> None:
    """Save arrays as ``.npz`` (names kept, no pickle): loadable with ``numpy.load`` anywhere.

    Written whole and fsynced, then renamed: a crash or a full disk (StorageError) leaves
    the file that was there before.
    """
    write_file(Path(path), lambda f: _write_npz(arrays, f))


def load_arrays(source: str | Path | BinaryIO) -> ArrayRecord:
    """Load arrays saved by ``save_arrays``, from a path or a file (refusing pickled content)."""
    with np.load(source, allow_pickle=False) as data:
        return ArrayRecord((name, np.array(data[name])) for name in data.files)


def _write_npz(arrays: ArrayRecord, file: BinaryIO) -> None:
    with zipfile.ZipFile(file, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, array.numpy(), allow_pickle=False)


def write_jsonl_line(path: Path, payload: Mapping[str, Any]) -> None:
    """Append one JSON line to ``path`` and fsync it; a failed write leaves no half line."""
    append_line(path, jsonl_line(payload))


def jsonl_line(payload: Mapping[str, Any]) -> str:
    """``payload`` as one strict-JSON line (no newline): NaN and infinities become ``null``.

    JSON has no NaN or Infinity, so any JSON reader takes the file; the ``Result`` keeps the
    values themselves.
    """
    return json.dumps(finite(payload), allow_nan=False)
