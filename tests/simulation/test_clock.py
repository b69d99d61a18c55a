"""The simulated clock of a SimulationGrid over hand-made populations: exact times only."""

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from pollinate import ArrayRecord, ClientApp, ConfigRecord, Message, MetricRecord, RecordDict
from pollinate.context import Context
from pollinate.errors import ConfigError, PollinateError, RoundError
from pollinate.message import ErrorCode, MessageType
from pollinate.server import Result, ServerApp
from pollinate.simulation import (
    ClientAppSource,
    InlineBackend,
    ProcessBackend,
    SimulationGrid,
    TaskResult,
    VectorizedBackend,
    VectorizedClientApp,
    _vectorized,
    run_simulation,
)
from pollinate.simulation._backend import Task
from pollinate.simulation._clock import PopulationBuilder
from pollinate.simulation._vectorized import BatchTrainer

from .fixture_apps import initial_arrays

# Every message and reply carries 1,000 bytes of arrays; node n trains on 10 * n examples.
ARRAY = np.zeros(250, np.float32)


@dataclass(frozen=True)
class Device:
    speed: float
    download_bps: float = math.inf
    upload_bps: float = math.inf


@dataclass
class Population:
    """Nodes 1..N with fixed devices; a node comes at ``comes[n]`` and goes at ``goes[n]``."""

    devices: dict
    seconds_per_example: float | None = 0.1
    comes: dict = field(default_factory=dict)
    goes: dict = field(default_factory=dict)
    drops: dict = field(default_factory=dict)  # (node, task index) -> fraction

    @property
    def num_nodes(self):
        return len(self.devices)

    def device(self, node_id):
        return self.devices[node_id]

    def _available(self, node_id, t):
        return self.comes.get(node_id, 0.0) <= t < self.goes.get(node_id, math.inf)

    def available_nodes(self, t):
        return [n for n in sorted(self.devices) if self._available(n, t)]

    def available_until(self, node_id, t):
        return self.goes.get(node_id, math.inf) if self._available(node_id, t) else t

    def next_available(self, t, count):
        for moment in sorted({t, *(c for c in self.comes.values() if c >= t)}):
            if len(self.available_nodes(moment)) >= count:
                return moment
        return math.inf

    def dropout_at(self, node_id, task_index):
        return self.drops.get((node_id, task_index))


def three_nodes(**changes):
    """Node 1: 4 s a task (1 compute + 1 down + 2 up); node 2: 1 s; node 3: 17 s (6 + 10 + 1)."""
    devices = {
        1: Device(1.0, download_bps=1000.0, upload_bps=500.0),
        2: Device(2.0),
        3: Device(0.5, download_bps=100.0, upload_bps=1000.0),
    }
    return Population(devices, **changes)


calls = []
app = ClientApp()


@app.train()
def _train(msg, context):
    calls.append(context.node_id)
    count = context.state.get("count", MetricRecord({"tasks": 0}))
    count["tasks"] += 1
    context.state["count"] = count
    metrics = MetricRecord({"num-examples": 10 * context.node_id, "tasks": count["tasks"]})
    return msg.reply(RecordDict({"arrays": ArrayRecord({"w": ARRAY}), "metrics": metrics}))


@pytest.fixture(autouse=True)
def _no_calls():
    calls.clear()


# What node n reports as num-examples in ``counting`` (None: no such metric).
EXAMPLES: dict = {}
counting = ClientApp()


@counting.train()
def _count(msg, context):
    metrics = MetricRecord({"other": 1.0})
    if EXAMPLES.get(context.node_id) is not None:
        metrics["num-examples"] = EXAMPLES[context.node_id]
    return msg.reply(RecordDict({"arrays": ArrayRecord({"w": ARRAY}), "metrics": metrics}))


def clocked(population, num_nodes=None, client=app):
    backend = InlineBackend()
    backend.start(ClientAppSource(app=client))
    return SimulationGrid(backend, num_nodes or population.num_nodes, 1, {}, population=population)


def train(node_id):
    content = RecordDict({"arrays": ArrayRecord({"w": ARRAY}), "config": ConfigRecord({})})
    return Message.create(content, node_id, MessageType.TRAIN)


def send(grid, *nodes):
    return grid.send(train(n) for n in nodes)


def timeline(grid, replies):
    """(node, simulated time after the reply, error code or None) for each reply as it comes."""
    return [
        (r.metadata.src_node_id, grid.now(), r.error.code if r.has_error else None) for r in replies
    ]


def test_each_reply_arrives_at_start_plus_compute_over_speed_plus_bytes_over_bandwidth():
    grid = clocked(three_nodes())
    assert grid.now() == 0.0
    assert timeline(grid, grid.receive(send(grid, 1, 2, 3))) == [
        (2, 1.0, None),
        (1, 4.0, None),
        (3, 17.0, None),
    ]
    # Sent at 17, when every node is free: the same durations again.
    assert timeline(grid, grid.receive(send(grid, 3, 1, 2))) == [
        (2, 18.0, None),
        (1, 21.0, None),
        (3, 34.0, None),
    ]


def test_measured_compute_is_used_without_seconds_per_example():
    grid = clocked(Population({1: Device(4.0)}, seconds_per_example=None))
    grid._backend = MeasuredBackend(compute_s=2.0)
    reply = next(grid.receive(send(grid, 1)))
    assert reply.has_content and grid.now() == 0.5  # 2 s of this machine's compute at 4x


class MeasuredBackend(InlineBackend):
    """The inline backend reporting a fixed compute time: the clock arithmetic, not a timer."""

    def __init__(self, compute_s):
        super().__init__()
        self.compute_s = compute_s
        self.start(ClientAppSource(app=app))

    def run(self, tasks, deadline):
        for result in super().run(tasks, deadline):
            yield type(result)(result.index, result.reply, result.state, self.compute_s)


def test_a_busy_node_starts_its_next_task_when_its_last_one_ends():
    grid = clocked(three_nodes())
    first = send(grid, 1, 3)
    assert grid.receive_first(first).metadata.src_node_id == 1 and grid.now() == 4.0
    again = send(grid, 1, 3)  # at 4: node 1 is free, node 3 is busy until 17
    assert timeline(grid, grid.receive([first[1], *again])) == [
        (1, 8.0, None),
        (3, 17.0, None),
        (3, 34.0, None),
    ]


def test_a_node_that_drops_out_fails_at_that_fraction_of_its_task_and_keeps_its_state():
    grid = clocked(three_nodes(drops={(1, 0): 0.5}))
    replies = list(grid.receive(send(grid, 1, 2)))
    assert [(r.metadata.src_node_id, r.error.code if r.has_error else None) for r in replies] == [
        (2, None),
        (1, ErrorCode.NODE_UNAVAILABLE),
    ]
    assert "dropped out 50% into the task, at 2 s" in replies[1].error.reason
    assert grid.now() == 2.0
    assert grid.node_state(1) is None  # it ran the task, then went away: nothing kept
    assert grid.node_state(2)["count"]["tasks"] == 1
    # Its next task (index 1) completes: sent at 2, 4 s long.
    assert timeline(grid, grid.receive(send(grid, 1))) == [(1, 6.0, None)]
    assert grid.node_state(1)["count"]["tasks"] == 1


@pytest.mark.parametrize("bad", [math.inf, math.nan, -5.0])
def test_a_num_examples_that_is_not_a_finite_count_is_an_invalid_reply_on_finite_time(bad):
    EXAMPLES.update({1: bad, 2: 20, 3: bad})
    grid = clocked(three_nodes(), client=counting)
    replies = list(grid.receive(send(grid, 1, 2, 3)))
    # No compute and no reply arrays: only each node's download (1 s and 10 s) counts.
    assert timeline(grid, replies) == [
        (1, 10.0, ErrorCode.INVALID_REPLY),
        (2, 10.0, None),
        (3, 10.0, ErrorCode.INVALID_REPLY),
    ]
    assert [r.metadata.src_node_id for r in replies] == [1, 2, 3]
    assert f"node 1 reported num-examples = {bad!r}" in replies[0].error.reason
    assert timeline(grid, grid.receive(send(grid, 1))) == [(1, 11.0, ErrorCode.INVALID_REPLY)]


def test_a_task_whose_end_is_not_finite_fails_at_its_start_and_the_clock_goes_on():
    population = three_nodes()
    population.devices[1] = Device(1e-320)
    grid = clocked(population)
    replies = list(grid.receive(send(grid, 1, 2)))
    assert timeline(grid, replies) == [(1, 1.0, ErrorCode.UNKNOWN), (2, 1.0, None)]
    assert "node 1's task would take inf s" in replies[0].error.reason
    assert list(grid.node_ids()) == [1, 2, 3]
    assert timeline(grid, grid.receive(send(grid, 1))) == [(1, 1.0, ErrorCode.UNKNOWN)]


def test_replies_without_num_examples_cost_no_compute_and_warn_once(caplog):
    EXAMPLES.clear()
    grid = clocked(three_nodes(), client=counting)
    with caplog.at_level("WARNING", logger="pollinate.simulation"):
        assert timeline(grid, grid.receive(send(grid, 1, 2))) == [(2, 0.0, None), (1, 3.0, None)]
        assert timeline(grid, grid.receive(send(grid, 2))) == [(2, 3.0, None)]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "node 1's reply has no 'num-examples' metric" in warnings[0]
    assert "report 'num-examples'" in warnings[0]


def test_a_node_that_goes_away_mid_task_fails_then_and_is_no_longer_listed():
    grid = clocked(three_nodes(goes={3: 10.0}))
    assert list(grid.node_ids()) == [1, 2, 3]
    replies = grid.receive(send(grid, 1, 3))
    assert timeline(grid, replies) == [(1, 4.0, None), (3, 10.0, ErrorCode.NODE_UNAVAILABLE)]
    assert list(grid.node_ids()) == [1, 2]
    assert grid.node_state(3) is None


def test_a_node_sent_work_after_it_went_away_fails_at_once():
    grid = clocked(three_nodes(goes={1: 3.0}))
    list(grid.receive(send(grid, 2)))
    grid._clock.advance(5.0)
    assert timeline(grid, grid.receive(send(grid, 1))) == [(1, 5.0, ErrorCode.NODE_UNAVAILABLE)]


def test_a_timeout_is_simulated_time_and_the_late_node_stays_busy():
    grid = clocked(three_nodes())
    replies = grid.receive(send(grid, 1, 2, 3), timeout_s=5.0)
    assert timeline(grid, replies) == [
        (2, 1.0, None),
        (1, 4.0, None),
        (3, 5.0, ErrorCode.TIMEOUT),
    ]
    assert calls == [1, 2, 3]
    assert grid.node_state(3)["count"]["tasks"] == 1  # it finished, late: its work is its own
    assert timeline(grid, grid.receive(send(grid, 3))) == [(3, 34.0, None)]  # starts at 17


def test_a_receive_stopped_early_leaves_the_clock_at_the_last_reply_taken():
    grid = clocked(three_nodes())
    ids = send(grid, 1, 2, 3)
    replies = grid.receive(ids)
    taken = [next(replies), next(replies)]
    replies.close()
    assert [r.metadata.src_node_id for r in taken] == [2, 1] and grid.now() == 4.0
    with pytest.raises(PollinateError, match="was not sent, or was received already"):
        list(grid.receive([ids[2]]))
    assert timeline(grid, grid.receive(send(grid, 3))) == [(3, 34.0, None)]  # still busy to 17


def test_receive_in_order_ends_at_the_latest_reply():
    grid = clocked(three_nodes())
    replies = list(grid.receive_in_order(send(grid, 3, 1, 2)))
    assert [r.metadata.src_node_id for r in replies] == [3, 1, 2]
    assert grid.now() == 17.0


def test_receive_first_returns_in_simulated_order_and_runs_each_task_once():
    grid = clocked(three_nodes())
    ids = send(grid, 3, 1, 2)
    got = []
    pending = list(ids)
    while pending:
        reply = grid.receive_first(pending)
        got.append((reply.metadata.src_node_id, grid.now()))
        pending.remove(reply.metadata.reply_to_message_id)
    assert got == [(2, 1.0), (1, 4.0), (3, 17.0)]
    assert sorted(calls) == [1, 2, 3]


def test_receive_first_gives_none_at_the_timeout_and_fails_nothing():
    grid = clocked(three_nodes())
    ids = send(grid, 3, 1)
    assert grid.receive_first(ids, timeout_s=2.0) is None
    assert grid.now() == 2.0  # the clock moved on to the end of the wait
    first = grid.receive_first(ids, timeout_s=2.0)  # node 1 arrives at 4.0, within it
    assert first.error is None and first.metadata.src_node_id == 1 and grid.now() == 4.0
    assert grid.receive_first([ids[0]], timeout_s=5.0) is None and grid.now() == 9.0
    second = grid.receive_first([ids[0]])  # nothing was failed or abandoned: it comes
    assert second.error is None and second.metadata.src_node_id == 3 and grid.now() == 17.0
    assert sorted(calls) == [1, 3]


def test_a_held_reply_that_came_earlier_is_received_without_moving_the_clock_back():
    grid = clocked(three_nodes())
    ids = send(grid, 3, 2)
    assert grid.receive_first([ids[0]]).metadata.src_node_id == 3 and grid.now() == 17.0
    assert next(grid.receive([ids[1]])).metadata.src_node_id == 2 and grid.now() == 17.0


def test_abandoned_messages_never_run_and_their_replies_are_dropped():
    grid = clocked(three_nodes())
    ids = send(grid, 1, 2, 3)
    grid.abandon([ids[0]])
    assert grid.receive_first(ids[1:]).metadata.src_node_id == 2
    grid.abandon(ids)  # node 3 ran: its reply is dropped, it stays busy until 17
    assert calls == [2, 3]
    assert timeline(grid, grid.receive(send(grid, 3))) == [(3, 34.0, None)]


def test_node_ids_and_wait_for_nodes_follow_the_population():
    grid = clocked(three_nodes(comes={3: 50.0}))
    assert list(grid.node_ids()) == [1, 2]
    # a gap in the population is waited out in simulated time, however short the wait's timeout
    assert list(grid.wait_for_nodes(3, timeout_s=10.0)) == [1, 2, 3]
    assert grid.now() == 50.0
    with pytest.raises(RoundError, match="has only 3 nodes"):
        grid.wait_for_nodes(4, timeout_s=1.0)


def test_a_population_that_never_has_enough_nodes_says_so():
    grid = clocked(three_nodes(goes={1: 1.0}))
    grid._clock.advance(2.0)
    with pytest.raises(RoundError, match="never has 3 nodes available at once after 2 s"):
        grid.wait_for_nodes(3, timeout_s=1e9)


def test_a_message_to_no_such_node_fails_at_its_sending_time():
    grid = clocked(three_nodes())
    grid._clock.advance(3.0)
    assert timeline(grid, grid.receive(send(grid, 9))) == [(9, 3.0, ErrorCode.NODE_UNAVAILABLE)]


def test_a_population_of_another_size_is_refused():
    with pytest.raises(ConfigError, match="describes 3 nodes and the simulation has 5"):
        clocked(three_nodes(), num_nodes=5)


def run_twice_the_same(population_fn):
    """Two rounds on a fresh grid: each reply's node, time, error and array sum."""
    grid = clocked(population_fn())
    out = []
    for _ in range(2):
        for reply in grid.receive(send(grid, 1, 2, 3), timeout_s=15.0):
            total = float(reply.content["arrays"]["w"].numpy().sum()) if reply.has_content else 0
            out.append((*timeline(grid, [reply])[0], total))
    return out


def test_the_same_population_gives_the_same_times_and_replies():
    def make():
        return three_nodes(drops={(2, 1): 0.25}, goes={1: 17.0})

    first = run_twice_the_same(make)
    assert first == run_twice_the_same(make)
    assert [(n, t) for n, t, *_ in first] == [
        (2, 1.0),
        (1, 4.0),
        (3, 15.0),  # timed out: busy until 17
        (2, 15.25),  # dropped out a quarter into its second task
        (1, 17.0),  # went away before its task's end at 19
        (3, 30.0),  # started at 17, timed out at 15 + 15
    ]


def test_without_a_population_there_is_no_clock_but_receive_first_and_abandon_work():
    backend = InlineBackend()
    backend.start(ClientAppSource(app=app))
    grid = SimulationGrid(backend, 3, 1, {})
    assert grid.now() is None
    ids = send(grid, 3, 1, 2)
    grid.abandon([ids[2]])
    first = grid.receive_first(ids[:2])
    assert first.metadata.src_node_id == 3  # the batch ran in order: node 3 finished first
    assert [r.metadata.src_node_id for r in grid.receive([ids[1]])] == [1]
    assert calls == [3, 1]
    with pytest.raises(PollinateError, match="at least one message id"):
        grid.receive_first([])


def test_a_model_object_builds_the_population():
    class Model:
        def build(self, num_nodes):
            return three_nodes()

    assert isinstance(Model(), PopulationBuilder)
    assert not isinstance(three_nodes(), PopulationBuilder)


@pytest.mark.parametrize("backend_name", ["inline", "process"])
def test_backends_report_each_tasks_measured_compute(backend_name, apps_dir):
    backend = InlineBackend() if backend_name == "inline" else ProcessBackend(num_workers=1)
    backend.start(ClientAppSource(spec="fixture_apps:noisy", search_path=str(apps_dir)))
    try:
        tasks = [Task(noisy_train(n), context(n)) for n in (1, 2)]
        results = list(backend.run(tasks, None))
    finally:
        backend.close()
    assert [r.reply.has_content for r in results] == [True, True]
    assert all(isinstance(r.compute_s, float) and r.compute_s >= 0 for r in results)


def noisy_train(node_id):
    content = RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": 1})})
    return Message.create(content, node_id, MessageType.TRAIN).with_metadata(run_id=1)


def context(node_id):
    return Context(1, node_id, {}, {}, RecordDict())


def test_run_simulation_builds_the_population_and_runs_on_its_clock():
    seen = []
    server = ServerApp()

    @server.main()
    def main(grid, context):
        replies = list(grid.receive(send(grid, *grid.node_ids())))
        seen.append([r.has_error for r in replies])
        seen.append(list(grid.node_ids()))  # at 10 s: node 3 went away mid-task
        return Result(ArrayRecord())

    class Model:
        def build(self, num_nodes):
            seen.append(num_nodes)
            return three_nodes(goes={3: 10.0})

    run_simulation(server, app, num_nodes=3, population=Model(), verbose=False)
    assert seen == [3, [False, False, True], [1, 2]]


def test_a_mistaken_receive_leaves_the_queue_as_it_was():
    grid = clocked(three_nodes())
    ids = send(grid, 1, 2)
    with pytest.raises(PollinateError, match="was not sent"):
        list(grid.receive([ids[0], "nope"]))
    with pytest.raises(PollinateError, match="named twice"):
        grid.receive_first([ids[0], ids[0]])
    assert [r.metadata.src_node_id for r in grid.receive(ids)] == [2, 1]
    assert calls == [1, 2]


class PairTrainer(BatchTrainer):
    """Trains nothing, two nodes a chunk: what the vectorized backend times."""

    def chunk_size(self, memory_budget):
        return 2

    def train_many(self, tasks):
        return [TaskResult(i, t.message.reply(RecordDict())) for i, t in enumerate(tasks)]


class Ticks:
    """``time`` for the vectorized backend: perf_counter reads 0, 6, 10, 16; monotonic is 0."""

    def __init__(self):
        self._reads = iter([0.0, 6.0, 10.0, 16.0])

    def perf_counter(self):
        return next(self._reads)

    def monotonic(self):
        return 0.0


def test_the_vectorized_backend_splits_each_chunks_time_evenly_over_its_tasks(monkeypatch):
    monkeypatch.setattr(_vectorized, "time", Ticks())
    backend = VectorizedBackend()
    backend.start(ClientAppSource(app=VectorizedClientApp(PairTrainer())))
    tasks = [Task(train(n), context(n)) for n in (1, 2, 3)]
    results = sorted(backend.run(tasks, None), key=lambda r: r.index)
    assert [r.compute_s for r in results] == [3.0, 3.0, 6.0]


def test_the_times_do_not_depend_on_the_backend_that_ran_the_tasks(apps_dir):
    timelines = []
    for backend in (InlineBackend(), ProcessBackend(num_workers=2)):
        backend.start(ClientAppSource(spec="fixture_apps:noisy", search_path=str(apps_dir)))
        grid = SimulationGrid(backend, 3, 1, {}, population=three_nodes(drops={(3, 0): 0.5}))
        try:
            ids = grid.send(noisy_train(n) for n in (3, 2, 1, 2))
            timelines.append(timeline(grid, grid.receive(ids)))
        finally:
            backend.close()
    # num-examples is 10 + node, the arrays 60 bytes each way: node 2 takes 1.2 / 2, twice in
    # a row; node 1 1.1 + 0.06 + 0.12; node 3 drops out half-way through 2.6 + 0.6 + 0.06.
    assert timelines[0] == timelines[1]  # bit for bit
    assert timelines[0] == [
        (2, pytest.approx(0.6), None),
        (2, pytest.approx(1.2), None),
        (1, pytest.approx(1.28), None),
        (3, pytest.approx(1.63), ErrorCode.NODE_UNAVAILABLE),
    ]
