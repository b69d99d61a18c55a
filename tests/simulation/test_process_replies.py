"""Replies come back through shared memory intact, and workers never wait on the caller."""

import multiprocessing as mp
import time
from dataclasses import replace
from types import MappingProxyType

import numpy as np
import pytest

from pollinate import ArrayRecord, ConfigRecord, Context, FedAvg, run_simulation
from pollinate.errors import AppError
from pollinate.simulation import ClientAppSource, ProcessBackend, _process
from pollinate.simulation._process import _recv_frame, _send_frame
from pollinate.simulation._shared import MIN_SHARED_BYTES, SHARED, ReplyArea

from .test_process_cache import task_for

needs_shared = pytest.mark.skipif(not SHARED, reason="no memfd on this platform")


def _frame(size, fill):
    return [b"head", np.full(size, fill, np.uint8).data], b"ctx" * 3


@needs_shared
def test_big_frames_cross_through_the_area_and_small_ones_through_the_socket():
    parent, child = mp.Pipe(duplex=True)
    worker_area, parent_area = ReplyArea(), ReplyArea()
    frames = [(MIN_SHARED_BYTES, 1), (3 * MIN_SHARED_BYTES, 2), (MIN_SHARED_BYTES, 3), (10, 4)]
    sizes = []
    try:
        for size, fill in frames:
            parts, context = _frame(size, fill)
            _send_frame(child, parts, context, area=(1, worker_area))
            message, got_context, keys, flags = _recv_frame(parent, [ReplyArea(), parent_area])
            assert bytes(message) == b"head" + bytes([fill]) * size
            assert bytes(got_context) == context and bytes(keys) == b"" and flags == 0
            sizes.append(parent_area.size)
        # The small frame took the socket: the area still holds the frame before it.
        assert parent_area.read(5) == b"head" + bytes([3])
    finally:
        for end in (parent, child):
            end.close()
        worker_area.close()
        parent_area.close()
    # The area grows when a reply outgrows it, and only then.
    assert sizes[0] > MIN_SHARED_BYTES and sizes[1] > 3 * MIN_SHARED_BYTES
    assert sizes[1:] == [sizes[1]] * 3


def _big_model_app(rows):
    """FedAvg on every node for 2 rounds, from a model of ``rows`` x 300 float32s."""
    model = ArrayRecord({"w": np.zeros((rows, 300), np.float32), "b": np.zeros(3, np.float32)})
    return dict(
        client_app="fixture_apps:noisy",
        strategy=FedAvg(fraction_train=1.0, fraction_evaluate=0.0),
        initial_arrays=model,
        num_rounds=2,
        num_nodes=5,
        verbose=False,
    )


@pytest.mark.parametrize("rows", [300, 900])  # 360 KB, then beyond the first area's size
def test_model_sized_replies_average_bit_for_bit_as_inline(apps_dir, rows):
    inline = run_simulation(**_big_model_app(rows), app_dir=apps_dir)
    pooled = run_simulation(
        **_big_model_app(rows),
        app_dir=apps_dir,
        backend="process",
        backend_options={"num_workers": 2},
    )
    for name in inline.arrays:
        assert inline.arrays[name].numpy().tobytes() == pooled.arrays[name].numpy().tobytes()
    assert [r.train.metrics for r in inline.rounds] == [r.train.metrics for r in pooled.rounds]


def test_a_worker_starts_its_next_task_before_the_caller_takes_the_last_result(apps_dir, tmp_path):
    """While the caller holds node 1's result, the one worker is already running node 2."""
    backend = ProcessBackend(num_workers=1)
    backend.start(ClientAppSource(spec="fixture_warm:marking", search_path=str(apps_dir)))
    tasks = [task_for(node, ArrayRecord({"w": np.zeros(3, np.float32)})) for node in (1, 2)]
    for task in tasks:
        task.message.content["config"] = ConfigRecord({"marks": str(tmp_path)})
    results = backend.run(tasks, deadline=None)
    try:
        first = next(results)
        assert first.index == 0
        # Not advancing the generator: only a hand-out before the yield can start node 2.
        assert _appears(tmp_path / "2", within_s=60.0)
        assert [r.index for r in results] == [1]
    finally:
        backend.close()


def _appears(path, within_s):
    """Whether ``path`` exists within ``within_s`` seconds (checked every 10 ms)."""
    give_up = time.monotonic() + within_s
    while not path.exists():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.01)
    return True


def test_the_run_config_crosses_once_per_worker_and_every_node_sees_its_own(apps_dir, monkeypatch):
    flags = []
    send_frame = _process._send_frame

    def spy(*args, **kwargs):
        flags.append(kwargs.get("flags", 0))
        return send_frame(*args, **kwargs)

    monkeypatch.setattr(_process, "_send_frame", spy)
    first, second = MappingProxyType({"lr": 0.1}), MappingProxyType({"lr": 0.2})
    model = ArrayRecord({"w": np.zeros(3, np.float32)})
    tasks = [task_for(node, model) for node in (1, 2, 3, 4)]
    configs = [first, first, second, first]
    tasks = [
        replace(t, context=replace(t.context, run_config=c))
        for t, c in zip(tasks, configs, strict=True)
    ]
    backend = ProcessBackend(num_workers=1)
    backend.start(ClientAppSource(spec="fixture_warm:configured", search_path=str(apps_dir)))
    try:
        results = list(backend.run(tasks, deadline=None))
    finally:
        backend.close()
    assert [r.reply.content.metrics()["lr"] for r in results] == [0.1, 0.1, 0.2, 0.1]
    assert flags == [0, _process._HELD_RUN_CONFIG, 0, 0]


def test_a_task_held_behind_a_node_whose_worker_dies_runs_on_a_fresh_worker(apps_dir):
    backend = ProcessBackend(num_workers=1)  # it holds both tasks at once
    backend.start(ClientAppSource(spec="fixture_apps:crashing", search_path=str(apps_dir)))
    model = ArrayRecord({"w": np.zeros(3, np.float32)})
    try:
        results = list(backend.run([task_for(2, model), task_for(3, model)], deadline=None))
    finally:
        backend.close()
    replies = {r.index: r.reply for r in results}
    assert "died (exit code 3)" in replies[0].error.reason
    assert replies[1].error is None and replies[1].content.metrics()["num-examples"] == 13


def test_a_reply_through_the_socket_and_a_big_next_task_do_not_wait_for_each_other(apps_dir):
    """The worker writes a 20 MB reply through the socket while the caller sends it the next
    task, 400 KB of arrays of its own: both writes fill the socket, and only a worker that
    takes in tasks while it replies lets both finish (before, this hung for good)."""
    backend = ProcessBackend(num_workers=1)
    backend.start(ClientAppSource(spec="fixture_warm:huge_reply", search_path=str(apps_dir)))
    try:
        tasks = [task_for(n, {"w": np.full(100_000, n, np.float32)}) for n in range(1, 6)]
        results = sorted(backend.run(tasks, deadline=time.monotonic() + 120), key=lambda r: r.index)
    finally:
        backend.close()
    for node_id, result in enumerate(results, start=1):
        assert not result.reply.has_error, result.reply.error
        assert (result.reply.content["arrays"]["x"].numpy() == node_id).all()


def test_a_replacement_that_never_gets_ready_ends_the_run_with_one_error(apps_dir, tmp_path):
    """Without a round timeout, a replacement whose warm-up hangs is bounded as at start."""
    source = ClientAppSource(
        spec="fixture_warm:hangs_when_replaced",
        search_path=str(apps_dir),
        warmup_context=Context(1, 0, {"num-partitions": 2}, {"marks": str(tmp_path)}),
    )
    backend = ProcessBackend(num_workers=1, ready_timeout_s=2.0)
    backend.start(source)
    try:
        model = {"w": np.zeros(10, np.float32)}
        results = backend.run([task_for(1, model), task_for(2, model)], deadline=None)
        with pytest.raises(AppError, match="replacement worker process did not load the Client"):
            list(results)
    finally:
        backend.close()
