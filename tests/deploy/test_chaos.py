"""Chaos: nodes killed, paused and slowed mid-run; the run completes with exact accounting."""

import os
import signal
import threading
import time

import numpy as np
import pytest

from pollinate import ArrayRecord, Context, FedAvg, RecordDict, ServerApp
from pollinate.server import RunObserver, run_server_app

MODEL = ArrayRecord({"w": np.zeros((128, 128))})  # 128 KB: 32 chunks of 4 KiB


class _Saboteur(RunObserver):
    """At the start of given rounds, kill, pause or resume node processes."""

    def __init__(self, actions):
        self.actions = actions

    def on_round_start(self, server_round, num_rounds):
        for action in self.actions.get(server_round, ()):
            action()


@pytest.mark.slow
def test_a_run_survives_killed_paused_and_slow_nodes(link, start_nodes, node_process):
    start_nodes(2)  # partitions 0 and 1: healthy
    doomed, frozen = node_process(2), node_process(3)
    node_process(4)  # slow: it sleeps past the round's timeout (so does the doomed one)
    grid = link.grid(run_id=9, run_config={"slow-partitions": "2 4", "sleep-s": 3.0})
    grid.wait_for_nodes(5, timeout_s=30)

    def later(fn, delay):
        return lambda: threading.Timer(delay, fn).start()

    saboteur = _Saboteur(
        {
            2: [later(doomed.kill, 0.5)],  # killed while it trains in round 2
            3: [lambda: os.kill(frozen.pid, signal.SIGSTOP)],  # paused as round 3 begins
            5: [lambda: os.kill(frozen.pid, signal.SIGCONT)],
        }
    )
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)
    app = ServerApp()

    @app.main()
    def main(grid, context):
        return strategy.start(grid, MODEL, num_rounds=5, timeout_s=2.0)

    began = time.monotonic()
    result = run_server_app(app, grid, Context(9, 0, {}, {}, RecordDict()), observers=[saboteur])
    assert time.monotonic() - began < 60
    rounds = {r.server_round: r.train for r in result.rounds if r.server_round > 0}
    assert sorted(rounds) == [1, 2, 3, 4, 5]
    for train in rounds.values():
        assert train.num_ok >= 2  # the healthy nodes always count
        assert 3 <= train.num_ok + train.num_failed <= 5  # every node sampled is accounted for
        assert len({f.node_id for f in train.failures}) == train.num_failed  # once each
    reasons = {r: " ".join(f.reason for f in train.failures) for r, train in rounds.items()}
    assert "TIMEOUT" in reasons[1]  # the slow node, every round
    assert "NODE_UNAVAILABLE" in reasons[2]  # the killed one
    # The paused one: its reply times out, or its heartbeats stop first.
    assert "NODE_UNAVAILABLE" in reasons[3] or reasons[3].count("TIMEOUT") >= 2
    # The aggregate is exactly the weighted mean of the replies that counted.
    assert result.arrays["w"].numpy().std() == 0.0
