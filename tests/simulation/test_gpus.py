"""GPU placement: the num-gpus check, the inventory, the packing, and workers given their GPUs."""

import math
import os
import sys

import pytest

from pollinate import ArrayRecord, Context, FedAvg, Message, RecordDict, ServerApp
from pollinate.errors import ConfigError
from pollinate.message import MessageType
from pollinate.server import Result
from pollinate.simulation import (
    ClientAppSource,
    InlineBackend,
    ProcessBackend,
    VectorizedBackend,
    _gpus,
    make_backend,
    run_simulation,
)
from pollinate.simulation._backend import Task
from pollinate.simulation._gpus import (
    GpuInventory,
    find_gpus,
    in_process_device,
    masked_count,
    num_gpus_problem,
    worker_gpus,
)

from .fixture_gpu_apps import reports_gpu

ENV = "CUDA_VISIBLE_DEVICES"


@pytest.fixture
def fake_gpus(monkeypatch):
    """Make the probe report ``count`` GPUs (CUDA_VISIBLE_DEVICES unset unless ``mask``)."""

    def install(count, mask=None):
        monkeypatch.setattr(_gpus, "count_visible_gpus", lambda: (count, "a fake probe"))
        if mask is None:
            monkeypatch.delenv(ENV, raising=False)
        else:
            monkeypatch.setenv(ENV, mask)

    return install


@pytest.fixture
def no_probe(monkeypatch):
    """Fail the test if anything probes for GPUs (CPU users must pay nothing)."""

    def probe():
        raise AssertionError("GPUs were probed with num-gpus = 0")

    monkeypatch.setattr(_gpus, "count_visible_gpus", probe)


def inventory(*ids, mask=None):
    return GpuInventory(tuple(ids), "a fake probe", mask)


@pytest.mark.parametrize("value", [0, 0.0, 0.1, 0.25, 1 / 3, 0.5, 1, 1.0, 2, 8.0])
def test_zero_fractions_and_whole_numbers_are_valid_shares(value):
    assert num_gpus_problem(value) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "must be 0 or more GPUs per node, got -1"),
        (-0.25, "must be 0 or more"),
        (math.nan, "must be 0 or more GPUs per node, got nan"),
        (math.inf, "must be 0 or more"),
        (1.5, "num-gpus = 1.5: above 1 a node holds whole GPUs; use 1 or 2"),
        (2.25, "use 2 or 3"),
        ("1", "must be a number of GPUs per node, got '1'"),
        (True, "must be a number"),
        (None, "must be a number"),
    ],
)
def test_hostile_shares_are_named_with_the_fix(value, message):
    problem = num_gpus_problem(value)
    assert problem is not None and problem.startswith("client-resources.num-gpus")
    assert message in problem


@pytest.mark.parametrize(
    ("mask", "physical", "count"),
    [
        (None, 4, 4),
        (None, 0, 0),
        ("", 4, 0),
        ("0,1", 4, 2),
        ("3, 1", 4, 2),
        ("2,3", 2, 0),  # indices past the machine's GPUs
        ("1,7,0", 2, 1),  # CUDA stops at the first invalid entry
        ("0,garbage,1", 4, 1),
        ("garbage", 4, 0),
        ("-1", 4, 0),
        ("0,0", 4, 1),  # a repeat ends the list
        ("GPU-8f3c-11aa,1", 4, 2),
        ("MIG-5d2e", 1, 1),
        ("\u00b2", 4, 0),  # a digit to str.isdigit(), not to CUDA
        ("01", 4, 1),
    ],
)
def test_the_mask_is_read_as_cuda_reads_it(mask, physical, count):
    assert masked_count(mask, physical) == count


@pytest.mark.parametrize(
    ("count", "mask", "ids"),
    [
        (2, None, ("0", "1")),
        (0, None, ()),
        (2, "2,3", ("2", "3")),
        (1, "3, garbage", ("3",)),
        (0, "", ()),
        (2, "GPU-a, GPU-b", ("GPU-a", "GPU-b")),
    ],
)
def test_the_inventory_names_gpus_as_the_mask_does(fake_gpus, count, mask, ids):
    fake_gpus(count, mask)
    found = find_gpus()
    assert found.ids == ids and found.mask == mask


@pytest.mark.parametrize(
    ("num_gpus", "gpus", "slots"),
    [
        (0.5, ("0", "1"), ("0", "1", "0", "1")),
        (0.25, ("0",), ("0",) * 4),
        (0.3, ("0",), ("0",) * 3),
        (0.1, ("0",), ("0",) * 10),  # 1 / 0.1 is 10.000000000000002
        (1 / 3, ("4", "5"), ("4", "5") * 3),
        (0.75, ("0", "1"), ("0", "1")),
        (1, ("0", "1"), ("0", "1")),
        (2, ("0", "1", "2", "3"), ("0,1", "2,3")),
        (2, ("0", "1", "2"), ("0,1",)),
        (3.0, ("a", "b", "c"), ("a,b,c",)),
        (1e-9, ("0",), ("0",) * 256),  # a tiny share does not list a billion slots
    ],
)
def test_workers_are_packed_onto_gpus_by_their_share(num_gpus, gpus, slots):
    assert worker_gpus(num_gpus, inventory(*gpus)) == slots


def test_more_gpus_than_exist_is_one_error_saying_what_was_found():
    with pytest.raises(ConfigError) as err:
        worker_gpus(3, inventory("0", "1"))
    assert str(err.value) == (
        "client-resources.num-gpus = 3 asks for 3 GPUs per node, and this machine has 2 GPUs "
        "(counted by a fake probe): lower client-resources.num-gpus to at most 2"
    )


def test_any_gpu_on_a_machine_without_one_says_how_to_run_on_the_cpu():
    with pytest.raises(ConfigError) as err:
        worker_gpus(0.25, inventory())
    assert str(err.value) == (
        "client-resources.num-gpus = 0.25 asks for 0.25 GPU per node, and this machine has no "
        "GPUs (counted by a fake probe): set client-resources.num-gpus = 0 to run on the CPU"
    )


def test_a_mask_that_hides_the_gpus_is_named_in_the_error():
    with pytest.raises(
        ConfigError,
        match=r"with CUDA_VISIBLE_DEVICES='garbage'\): .*, or change CUDA_VISIBLE_DEVICES",
    ):
        worker_gpus(1, inventory(mask="garbage"))


@pytest.mark.parametrize("value", [0, -1, math.nan, 1.5])
def test_packing_refuses_a_share_that_is_not_a_positive_valid_one(value):
    with pytest.raises(ConfigError, match=r"client-resources\.num-gpus"):
        worker_gpus(value, inventory("0"))


def test_cpu_users_never_probe_for_gpus(no_probe):
    assert in_process_device(0) == "cpu"
    assert InlineBackend().device == "cpu"
    assert VectorizedBackend().device == "cpu"
    assert ProcessBackend(num_workers=1).gpu_slots == ()


def test_nodes_in_this_process_run_on_its_first_visible_gpu(fake_gpus):
    fake_gpus(1)
    assert in_process_device(0.5) == "cuda:0"
    assert in_process_device(1) == "cuda:0"
    fake_gpus(1, mask="3")
    assert make_backend("inline", num_gpus=1).device == "cuda:0"
    assert make_backend("vectorized", num_gpus=0.25).device == "cuda:0"


@pytest.mark.parametrize("backend", ["inline", "vectorized", "process"])
def test_each_backend_refuses_more_gpus_than_exist_before_it_starts(fake_gpus, backend):
    fake_gpus(0)
    with pytest.raises(ConfigError, match="this machine has no GPUs"):
        make_backend(backend, num_gpus=1)


def test_run_simulation_fails_before_round_one_without_the_gpus(fake_gpus):
    fake_gpus(1)
    with pytest.raises(ConfigError, match="asks for 2 GPUs per node, and this machine has 1 GPU "):
        run_simulation(
            client_app=reports_gpu,
            num_nodes=2,
            strategy=FedAvg(),
            num_rounds=1,
            backend_options={"num_gpus": 2},
            verbose=False,
        )


def test_process_workers_are_capped_by_what_the_gpus_hold(fake_gpus):
    fake_gpus(2)
    assert ProcessBackend(num_workers=8, num_gpus=0.5).num_workers == 4
    assert ProcessBackend(num_workers=3, num_gpus=0.5).num_workers == 3
    assert ProcessBackend(num_workers=8, num_gpus=2).gpu_slots == ("0,1",)


def query(node_id):
    message = Message.create(RecordDict(), node_id, MessageType.QUERY, run_id=1)
    return Task(message, Context(1, node_id, {"partition-id": node_id - 1}, {}, RecordDict()))


def train(node_id):
    message = Message.create(RecordDict(), node_id, MessageType.TRAIN, run_id=1)
    return Task(message, Context(1, node_id, {}, {}, RecordDict()))


def seen(results):
    """Per reply: (its worker's pid, its CUDA_VISIBLE_DEVICES, the device its context named)."""
    rows = []
    for result in sorted(results, key=lambda r: r.index):
        assert not result.reply.has_error, result.reply.error
        report = result.reply.content["seen"]
        pid = result.reply.content.metrics()["pid"]
        rows.append((pid, report["cuda-visible-devices"], report["device"]))
    return rows


def started(backend, apps_dir):
    backend.start(ClientAppSource(spec="fixture_gpu_apps:reports_gpu", search_path=str(apps_dir)))
    return backend


def test_each_worker_sees_only_its_gpu_and_its_nodes_run_on_cuda_0(fake_gpus, apps_dir):
    fake_gpus(2, mask="6,7")
    backend = started(ProcessBackend(num_workers=2, num_gpus=0.5), apps_dir)
    try:
        rows = seen(backend.run([query(n) for n in range(1, 9)], deadline=None))
        assert sorted(w.gpu for w in backend._workers) == ["6", "7"]
    finally:
        backend.close()
    assert {device for _, _, device in rows} == {"cuda:0"}
    gpu_of = {pid: gpu for pid, gpu, _ in rows}
    assert set(gpu_of.values()) <= {"6", "7"}
    assert len(gpu_of) == len({(pid, gpu) for pid, gpu, _ in rows})  # one GPU per worker
    assert os.environ[ENV] == "6,7"  # the parent's own mask is left as it was


def test_a_workers_warm_up_runs_on_its_gpu(fake_gpus, apps_dir):
    fake_gpus(1)
    source = ClientAppSource(
        spec="fixture_gpu_apps:reports_gpu",
        search_path=str(apps_dir),
        warmup_context=Context(7, 0, {"num-partitions": 4}),
    )
    backend = ProcessBackend(num_workers=1, num_gpus=1)
    backend.start(source)
    try:
        [result] = backend.run([query(1)], deadline=None)
    finally:
        backend.close()
    assert result.reply.content["seen"]["warmed-on"] == "cuda:0"


def test_a_worker_holding_two_gpus_sees_both(fake_gpus, apps_dir):
    fake_gpus(2)
    backend = started(ProcessBackend(num_gpus=2), apps_dir)
    try:
        rows = seen(backend.run([query(1)], deadline=None))
    finally:
        backend.close()
    assert [(gpu, device) for _, gpu, device in rows] == [("0,1", "cuda:0")]


def test_a_replaced_worker_takes_over_its_predecessors_gpu(fake_gpus, apps_dir):
    fake_gpus(1, mask="5")
    backend = started(ProcessBackend(num_workers=1, num_gpus=1), apps_dir)
    try:
        died, after = list(backend.run([train(1), query(2)], deadline=None))
        rows = seen([after])
    finally:
        backend.close()
    assert died.reply.has_error and "died" in died.reply.error.reason
    assert [(gpu, device) for _, gpu, device in rows] == [("5", "cuda:0")]


def test_without_gpus_workers_keep_the_environment_and_run_on_cpu(no_probe, apps_dir, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    backend = started(ProcessBackend(num_workers=1), apps_dir)
    try:
        rows = seen(backend.run([query(1)], deadline=None))
    finally:
        backend.close()
    assert [(gpu, device) for _, gpu, device in rows] == [("unset", "cpu")]


@pytest.mark.parametrize("backend", ["inline", "vectorized"])
def test_in_process_nodes_learn_their_device(fake_gpus, backend):
    fake_gpus(1)
    for num_gpus, device in ((0, "cpu"), (1, "cuda:0")):
        runner = make_backend(backend, num_gpus=num_gpus)
        runner.start(ClientAppSource(app=reports_gpu))
        (result,) = list(runner.run([query(1)], deadline=None))
        runner.close()
        assert result.reply.content["seen"]["device"] == device


def test_a_simulation_on_the_process_backend_places_its_workers_on_the_gpu(fake_gpus, apps_dir):
    fake_gpus(1, mask="3")
    replies = []
    server = ServerApp()

    @server.main()
    def ask_every_node(grid, context):
        ids = grid.send(Message.create(RecordDict(), n, MessageType.QUERY) for n in grid.node_ids())
        replies.extend(grid.receive(ids))
        return Result(ArrayRecord())

    run_simulation(
        server,
        "fixture_gpu_apps:reports_gpu",
        num_nodes=6,
        app_dir=apps_dir,
        backend="process",
        backend_options={"num_gpus": 0.5, "num_workers": 8},
        verbose=False,
    )
    seen_by = [(r.content.metrics()["pid"], r.content["seen"]) for r in replies]
    rows = [(pid, seen["cuda-visible-devices"], seen["device"]) for pid, seen in seen_by]
    assert len(rows) == 6 and {(gpu, device) for _, gpu, device in rows} == {("3", "cuda:0")}
    assert {seen["warmed-on"] for _, seen in seen_by} == {"cuda:0"}  # run_simulation warms up
    assert len({pid for pid, _, _ in rows}) <= 2  # 0.5 each: the one GPU holds two workers


def test_with_torch_the_probe_is_torchs_own_count():
    torch = pytest.importorskip("torch")
    assert _gpus.count_visible_gpus() == (torch.cuda.device_count(), "torch.cuda.device_count()")


NVIDIA_SMI_L = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0a1b)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2c3d)
  MIG 1g.10gb     Device  0: (UUID: MIG-4e5f)
"""


@pytest.fixture
def without_torch(monkeypatch, tmp_path):
    """No torch to import, and a fake ``nvidia-smi`` on PATH printing NVIDIA_SMI_L."""
    monkeypatch.setitem(sys.modules, "torch", None)  # find_spec("torch") is now None
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'END'\n{NVIDIA_SMI_L}END\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.parametrize(("mask", "count"), [(None, 2), ("1", 1), ("", 0), ("1,0,5", 2)])
def test_without_torch_nvidia_smi_lists_the_gpus_and_the_mask_hides_some(
    without_torch, monkeypatch, mask, count
):
    if mask is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, mask)
    assert _gpus.count_visible_gpus() == (count, "nvidia-smi -L")


def test_without_torch_or_nvidia_smi_no_gpu_is_found(without_torch, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    count, source = _gpus.count_visible_gpus()
    assert count == 0 and source.startswith("nvidia-smi -L (not found")
