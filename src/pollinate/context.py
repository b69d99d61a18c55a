"""Context: what an app knows about where it runs, and the state it keeps there."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from .records import RecordDict

__all__ = ["Context", "UserConfig", "UserConfigValue"]

UserConfigValue: TypeAlias = bool | int | float | str
UserConfig: TypeAlias = Mapping[str, UserConfigValue]


@dataclass(frozen=True, slots=True)
class Context:
    """Run id, node id, configs, and a ``state`` that persists on this node across rounds.

    ``node_config`` describes the node (in simulation: ``partition-id`` and
    ``num-partitions``); ``run_config`` is the app's config with the user's overrides;
    ``state`` is a RecordDict the node may read and write: whatever it holds at the end of
    one round is there at the start of the next.
    """

    run_id: int
    node_id: int
    node_config: UserConfig = field(default_factory=dict)
    run_config: UserConfig = field(default_factory=dict)
    state: RecordDict = field(default_factory=RecordDict)
