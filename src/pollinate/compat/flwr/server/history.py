"""Flower's ``History``: losses and metrics per round, from a pollinate ``Result``.

``history_from_result`` reads a Result's rounds: the nodes' evaluate ``loss`` becomes
``losses_distributed`` and their other evaluate metrics ``metrics_distributed``; train
metrics become ``metrics_distributed_fit``; the server's (centralized) ``loss`` and metrics
become ``losses_centralized`` and ``metrics_centralized``, round 0 included.
"""

from __future__ import annotations

import pprint
from collections.abc import Mapping
from typing import Any

from ....server import Result
from ..common.typing import Scalar

__all__ = ["History", "history_from_result"]

LOSS_KEY = "loss"


class History:
    """A run's losses and metrics, per round, as Flower's ``start_server`` returns them."""

    def __init__(self) -> None:
        self.losses_distributed: list[tuple[int, float]] = []
        self.losses_centralized: list[tuple[int, float]] = []
        self.metrics_distributed_fit: dict[str, list[tuple[int, Scalar]]] = {}
        self.metrics_distributed: dict[str, list[tuple[int, Scalar]]] = {}
        self.metrics_centralized: dict[str, list[tuple[int, Scalar]]] = {}

    def add_loss_distributed(self, server_round: int, loss: float) -> None:
        """Add one round's loss from the clients' evaluation."""
        self.losses_distributed.append((server_round, loss))

    def add_loss_centralized(self, server_round: int, loss: float) -> None:
        """Add one round's loss from the server's evaluation."""
        self.losses_centralized.append((server_round, loss))

    def add_metrics_distributed_fit(self, server_round: int, metrics: Mapping[str, Any]) -> None:
        """Add one round's metrics from the clients' training."""
        _add(self.metrics_distributed_fit, server_round, metrics)

    def add_metrics_distributed(self, server_round: int, metrics: Mapping[str, Any]) -> None:
        """Add one round's metrics from the clients' evaluation."""
        _add(self.metrics_distributed, server_round, metrics)

    def add_metrics_centralized(self, server_round: int, metrics: Mapping[str, Any]) -> None:
        """Add one round's metrics from the server's evaluation."""
        _add(self.metrics_centralized, server_round, metrics)

    def __repr__(self) -> str:
        """Flower's printed summary: each non-empty series, round by round."""
        parts: list[str] = []
        for title, losses in (
            ("loss, distributed", self.losses_distributed),
            ("loss, centralized", self.losses_centralized),
        ):
            if losses:
                rows = "".join(f"\tround {r}: {loss}\n" for r, loss in losses)
                parts.append(f"History ({title}):\n{rows}")
        for title, metrics in (
            ("metrics, distributed, fit", self.metrics_distributed_fit),
            ("metrics, distributed, evaluate", self.metrics_distributed),
            ("metrics, centralized", self.metrics_centralized),
        ):
            if metrics:
                parts.append(f"History ({title}):\n{pprint.pformat(metrics)}\n")
        return "".join(parts).rstrip("\n") if parts else "History (empty)"


def history_from_result(result: Result) -> History:
    """The ``History`` of a pollinate run (see the module's docstring for the mapping)."""
    history = History()
    for record in result.rounds:
        r = record.server_round
        if record.train is not None:
            history.add_metrics_distributed_fit(r, record.train.metrics)
        if record.evaluate is not None:
            loss, metrics = _split_loss(record.evaluate.metrics)
            if loss is not None:
                history.add_loss_distributed(r, loss)
            history.add_metrics_distributed(r, metrics)
        loss, metrics = _split_loss(record.server_metrics)
        if loss is not None:
            history.add_loss_centralized(r, loss)
        history.add_metrics_centralized(r, metrics)
    return history


def _split_loss(metrics: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    rest = {k: v for k, v in metrics.items() if k != LOSS_KEY}
    loss = metrics.get(LOSS_KEY)
    return (float(loss) if loss is not None else None), rest


def _add(series: dict[str, list[tuple[int, Scalar]]], r: int, metrics: Mapping[str, Any]) -> None:
    for key, value in metrics.items():
        series.setdefault(key, []).append((r, value))
