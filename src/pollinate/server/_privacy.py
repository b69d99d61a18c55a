"""The privacy a run spent, read from its rounds' train metrics, for summaries and reports.

A differentially private round's train metrics carry ``privacy.epsilon`` (cumulative, at
``privacy.delta``); nodes that account their own privacy (DP-SGD, local DP) reply with
``privacy.node-epsilon`` and ``privacy.node-delta``, of which FedAvg's default metrics
aggregation keeps the round's maximum (the worst node bounds the guarantee). The summary of
``pollinate run``, its ``--json`` line and ``pollinate report`` show the run's last epsilon
and the largest node epsilon of any round (a node may sit out the last rounds). A round
aggregated with SecAgg+ carries ``secagg.count``, the nodes its sum holds: the summary
says so (in a DP run the aggregated ``num-examples`` is that count too, each node weighing
1). A run without any of these shows nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

__all__ = ["PrivacySpent", "Spent", "Summed", "privacy_spent"]

SECAGG_COUNT = "secagg.count"
"""A securely aggregated round's train metric: how many nodes its sum holds."""

_KEYS = {
    "run": ("privacy.epsilon", "privacy.delta"),
    "nodes": ("privacy.node-epsilon", "privacy.node-delta"),
}


@dataclass(frozen=True, slots=True)
class Spent:
    """An epsilon at a delta (None if the metrics gave none), as of one round."""

    epsilon: float
    delta: float | None
    server_round: int

    def at_delta(self) -> str:
        """``"epsilon 2.91 at delta 1e-05"``."""
        delta = "" if self.delta is None else f" at delta {self.delta:g}"
        return f"epsilon {self.epsilon:.3g}{delta}"


@dataclass(frozen=True, slots=True)
class Summed:
    """A securely aggregated round: how many nodes its sum held."""

    nodes: int
    server_round: int


@dataclass(frozen=True, slots=True)
class PrivacySpent:
    """The run's (server-accounted) privacy, the nodes' own, and secure aggregation, if any."""

    run: Spent | None
    nodes: Spent | None
    secure: Summed | None = None

    def lines(self) -> list[tuple[str, str]]:
        """``(label, text)`` pairs for a summary: what was spent, and after how many rounds."""
        lines = []
        if self.run is not None:
            rounds = self.run.server_round
            text = f"{self.run.at_delta()} after {rounds} round{'' if rounds == 1 else 's'}"
            lines.append(("privacy", text))
        if self.nodes is not None:
            text = (
                f"{self.nodes.at_delta()}, the most any node reported "
                f"(round {self.nodes.server_round})"
            )
            lines.append(("privacy (nodes' own)", text))
        if self.secure is not None:
            summed = f"SecAgg+, {self.secure.nodes} nodes summed"
            lines.append(("secure aggregation", f"{summed} (round {self.secure.server_round})"))
        return lines

    def to_json(self) -> dict[str, Any]:
        """``{"epsilon", "delta", "rounds"}`` and ``node_*`` keys, for what was reported."""
        out: dict[str, Any] = {}
        if self.run is not None:
            out.update(epsilon=self.run.epsilon, delta=self.run.delta)
            out["rounds"] = self.run.server_round
        if self.nodes is not None:
            out.update(node_epsilon=self.nodes.epsilon, node_delta=self.nodes.delta)
            out["node_round"] = self.nodes.server_round
        if self.secure is not None:
            out.update(secure_aggregation="SecAgg+", secagg_nodes=self.secure.nodes)
            out["secagg_round"] = self.secure.server_round
        return out


def privacy_spent(train_metrics: Mapping[int, Mapping[str, Any]]) -> PrivacySpent | None:
    """The last reported privacy in ``{round: train metrics}``; None for a run without DP."""
    found = {
        "run": _last(train_metrics, *_KEYS["run"]),
        "nodes": _largest(train_metrics, *_KEYS["nodes"]),
    }
    secure = _last_summed(train_metrics)
    if found["run"] is None and found["nodes"] is None and secure is None:
        return None
    return PrivacySpent(found["run"], found["nodes"], secure)


def _last(
    train_metrics: Mapping[int, Mapping[str, Any]], epsilon_key: str, delta_key: str
) -> Spent | None:
    for server_round in sorted(train_metrics, reverse=True):
        metrics = train_metrics[server_round]
        epsilon = metrics.get(epsilon_key)
        if _is_number(epsilon):
            delta = metrics.get(delta_key)
            return Spent(float(epsilon), float(delta) if _is_number(delta) else None, server_round)
    return None


def _largest(
    train_metrics: Mapping[int, Mapping[str, Any]], epsilon_key: str, delta_key: str
) -> Spent | None:
    """The largest epsilon of any round (the latest such round on a tie)."""
    rounds = [_last({r: train_metrics[r]}, epsilon_key, delta_key) for r in train_metrics]
    reported = [spent for spent in rounds if spent is not None]
    return max(reported, key=lambda s: (s.epsilon, s.server_round), default=None)


def _last_summed(train_metrics: Mapping[int, Mapping[str, Any]]) -> Summed | None:
    """The last securely aggregated round's count of nodes summed."""
    for server_round in sorted(train_metrics, reverse=True):
        count = train_metrics[server_round].get(SECAGG_COUNT)
        if _is_number(count):
            return Summed(int(count), server_round)
    return None


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
