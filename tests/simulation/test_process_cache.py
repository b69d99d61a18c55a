"""The process backend sends a round's model once per worker, and every node still gets it whole."""

import numpy as np

from pollinate import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from pollinate.message import MessageType
from pollinate.simulation import ClientAppSource, ProcessBackend
from pollinate.simulation._backend import Task
from pollinate.simulation._process import SentArrays

from .fixture_apps import initial_arrays


def task_for(node_id, arrays, server_round=1):
    content = RecordDict(
        {"arrays": ArrayRecord(arrays), "config": ConfigRecord({"server-round": server_round})}
    )
    message = Message.create(content, node_id, MessageType.TRAIN, run_id=1)
    return Task(message, Context(1, node_id, {}, {}, RecordDict()))


def test_a_record_of_the_same_arrays_is_sent_once_then_named():
    sent, model = SentArrays(), initial_arrays()
    first, cached = sent.strip(task_for(1, model).message)
    assert cached == [] and first.content.arrays().nbytes == model.nbytes
    second, cached = sent.strip(task_for(2, model).message)
    assert cached == ["arrays"] and len(second.content.arrays()) == 0
    assert second.content.config()["server-round"] == 1
    new_model = ArrayRecord({k: np.ones_like(a.numpy()) for k, a in model.items()})
    third, cached = sent.strip(task_for(3, new_model).message)
    assert cached == [] and third.content.arrays()["w"] is new_model["w"]


def test_the_worker_side_puts_back_a_copy_of_what_it_holds():
    parent, worker, model = SentArrays(), SentArrays(), initial_arrays()
    restored = []
    for node in (1, 2):
        message, cached = parent.strip(task_for(node, model).message)
        restored.append(worker.restore(message, cached).content.arrays())
    assert restored[0] is not restored[1]
    assert list(restored[1]) == list(model) and restored[1]["w"] is model["w"]


def test_a_node_that_spoils_its_record_does_not_change_the_next_nodes(apps_dir):
    backend = ProcessBackend(num_workers=1)
    backend.start(ClientAppSource(spec="fixture_cached:editing", search_path=str(apps_dir)))
    try:
        model = ArrayRecord({"w": np.ones((4, 3), np.float32), "b": np.ones(3, np.float32)})
        results = list(backend.run([task_for(n, model) for n in (1, 2, 3)], deadline=None))
        new_model = ArrayRecord({k: 2 * a.numpy() for k, a in model.items()})
        results += list(backend.run([task_for(4, new_model, 2)], deadline=None))
    finally:
        backend.close()
    sums = [r.reply.content.metrics()["sum"] for r in results]
    assert sums == [15.0, 15.0, 15.0, 30.0]
