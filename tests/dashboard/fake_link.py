"""A LinkView for tests: runs and nodes in lists, stop recorded (or refused)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from pollinate.deploy import RunSummary
from pollinate.errors import PollinateError


@dataclass(frozen=True)
class FakeFailure:
    at: float
    run_id: int
    reason: str


@dataclass(frozen=True)
class FakeNode:
    node_id: int
    connected: bool = True
    last_seen: float | None = None
    tasks_sent: int = 0
    tasks_done: int = 0
    tasks_failed: int = 0
    failures: tuple[FakeFailure, ...] = ()
    node_config: dict[str, object] = field(default_factory=dict)


def summary(run_id: int, status: str, rounds_done: int = 0, **kwargs: object) -> RunSummary:
    now = time.time()
    fields: dict[str, object] = {
        "name": "skewed-mnist",
        "submitted_at": now - 60,
        "started_at": now - 50,
        "ended_at": None,
        "error": None,
        "out_dir": None,
        "run_config": {"num-server-rounds": 10},
    }
    fields.update(kwargs)
    return RunSummary(run_id=run_id, status=status, rounds_done=rounds_done, **fields)  # type: ignore[arg-type]


class FakeLinkView:
    """Runs and nodes the test sets; ``stop`` marks the run stopped or raises ``refuse``."""

    def __init__(self, runs: list[RunSummary], nodes: list[FakeNode]) -> None:
        self.run_list = runs
        self.node_list = nodes
        self.stopped: list[int] = []
        self.refuse: str | None = None
        self.dirs: dict[int, Path] = {}
        self.asked = 0
        """How many times the dashboard asked for the runs."""

    def runs(self) -> list[RunSummary]:
        self.asked += 1
        return list(self.run_list)

    def nodes(self) -> list[FakeNode]:
        return list(self.node_list)

    def stop(self, run_id: int) -> None:
        if self.refuse is not None:
            raise PollinateError(self.refuse)
        self.stopped.append(run_id)
        self.run_list = [
            replace(r, status="stopped") if r.run_id == run_id else r for r in self.run_list
        ]

    def run_dir(self, run: RunSummary) -> Path | None:
        return self.dirs.get(run.run_id)


def example_view() -> FakeLinkView:
    """A link with a running, a queued, a finished and a failed run and three nodes."""
    now = time.time()
    runs = [
        summary(11, "finished", 10, ended_at=now - 30),
        summary(12, "failed", 3, ended_at=now - 20, error="round 4 train: 0 valid replies"),
        summary(13, "running", 4, run_config={"num-server-rounds": 10, "learning-rate": 0.05}),
        summary(14, "queued", started_at=None),
    ]
    nodes = [
        FakeNode(
            1,
            True,
            now - 1.5,
            40,
            39,
            1,
            (FakeFailure(now - 90, 12, "CUDA out of memory"),),
            {"partition-id": 0},
        ),
        FakeNode(2, True, now - 0.7, 40, 40, 0, (), {"partition-id": 1}),
        FakeNode(
            3,
            False,
            now - 300,
            22,
            18,
            4,
            tuple(
                FakeFailure(now - 300 + i, 12, f"task timed out after 60 s ({i})") for i in range(4)
            ),
            {"partition-id": 2},
        ),
    ]
    return FakeLinkView(runs, nodes)
