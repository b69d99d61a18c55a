"""A run closed early (over-selection) keeps its process workers: their results are drained."""

import time

import numpy as np

from pollinate import ArrayRecord, FedAvg
from pollinate.simulation import ClientAppSource, ProcessBackend, SimulationGrid, _process

from .fixture_apps import initial_arrays
from .test_process_cache import task_for


def _pids(backend):
    return [worker.process.pid for worker in backend._workers]


def _started(apps_dir, spec):
    backend = ProcessBackend(num_workers=2)
    backend.start(ClientAppSource(spec=spec, search_path=str(apps_dir)))
    return backend


def test_a_run_closed_after_its_first_results_keeps_its_workers(apps_dir):
    backend = _started(apps_dir, "fixture_apps:noisy")
    model = ArrayRecord({"w": np.zeros(3, np.float32)})
    try:
        before = _pids(backend)
        for _ in range(3):
            results = backend.run([task_for(n, model) for n in range(1, 9)], deadline=None)
            next(results)
            results.close()  # the strategy has its K replies: the rest are not wanted
            assert _pids(backend) == before
        # The discarded replies never reach a later run: each result answers its own task.
        results = list(backend.run([task_for(n, model) for n in (5, 6)], deadline=None))
        counts = {r.index: r.reply.content.metrics()["num-examples"] for r in results}
        assert counts == {0: 15, 1: 16}
        assert _pids(backend) == before
    finally:
        backend.close()


def test_a_worker_still_busy_after_the_grace_period_is_replaced(apps_dir, monkeypatch):
    monkeypatch.setattr(_process, "DRAIN_GRACE_S", 5.0)
    backend = _started(apps_dir, "fixture_apps:stalling")  # node 2 sleeps 60 s
    model = ArrayRecord({"w": np.zeros(3, np.float32)})
    try:
        before = _pids(backend)
        # Worker 0 holds nodes 2 (stalled) and 3, worker 1 nodes 1 and 4.
        results = backend.run([task_for(n, model) for n in (2, 1, 3, 4)], deadline=None)
        assert next(results).index == 1
        results.close()
        after = _pids(backend)
        assert after[0] != before[0] and after[1] == before[1]
        rerun = list(backend.run([task_for(n, model) for n in (1, 3)], deadline=None))
        assert sorted(r.index for r in rerun) == [0, 1]
        assert all(r.reply.error is None for r in rerun)
    finally:
        backend.close()


def test_a_run_closed_early_waits_the_grace_not_the_rounds_deadline(apps_dir, monkeypatch):
    # The grace is short and the deadline an hour away: a drain bounded by the deadline
    # would wait out node 2's 60 s stall and keep its worker; one bounded by the grace
    # replaces it, and keeps the other worker, whose tasks end at once.
    monkeypatch.setattr(_process, "DRAIN_GRACE_S", 5.0)
    backend = _started(apps_dir, "fixture_apps:stalling")  # node 2 sleeps 60 s
    model = ArrayRecord({"w": np.zeros(3, np.float32)})
    try:
        before = _pids(backend)
        deadline = time.monotonic() + 3600.0
        results = backend.run([task_for(n, model) for n in (2, 1, 3, 4)], deadline=deadline)
        assert next(results).index == 1
        results.close()
        after = _pids(backend)
        assert after[0] != before[0] and after[1] == before[1]
    finally:
        backend.close()


def test_over_selection_on_the_process_backend_keeps_the_workers(apps_dir):
    backend = _started(apps_dir, "fixture_apps:noisy")
    strategy = FedAvg(
        fraction_train=0.5,
        fraction_evaluate=0.0,
        min_train_nodes=1,
        min_available_nodes=1,
        over_selection=1.0,
    )
    try:
        before = _pids(backend)
        grid = SimulationGrid(backend, 8, 1, {})
        result = strategy.start(grid, initial_arrays(), num_rounds=4, timeout_s=None)
        assert [r.train.num_ok for r in result.rounds] == [4, 4, 4, 4]
        assert _pids(backend) == before
    finally:
        backend.close()
