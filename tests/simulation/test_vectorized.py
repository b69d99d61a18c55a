"""The vectorized backend: same replies as the sequential handler, deterministic, bounded."""

import dataclasses
import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pollinate import ArrayRecord, ClientApp, ConfigRecord, Context, Message, RecordDict  # noqa: E402
from pollinate.errors import AppError, ConfigError  # noqa: E402
from pollinate.frameworks import torch as torch_records  # noqa: E402
from pollinate.message import ErrorCode  # noqa: E402
from pollinate.simulation import ClientAppSource, Task, make_backend, run_simulation  # noqa: E402
from pollinate.simulation.vectorized import SGD, Adam, VectorizedClient  # noqa: E402
from pollinate.strategy import FedAvg  # noqa: E402

from . import vectorized_apps  # noqa: E402

NUM_NODES = 20


def _message(node_id, arrays, server_round=1, **config):
    config = ConfigRecord({"server-round": server_round, **config})
    return Message.create(RecordDict({"arrays": arrays, "config": config}), node_id, "train")


def _tasks(arrays, num_nodes=NUM_NODES, config=lambda node_id: {}, node_config=None):
    return [
        Task(
            _message(n, arrays, **config(n)),
            Context(
                0, n, {"partition-id": n - 1, "num-partitions": num_nodes, **(node_config or {})}
            ),
        )
        for n in range(1, num_nodes + 1)
    ]


def _global_arrays():
    torch.manual_seed(0)
    return torch_records.to_arrays(vectorized_apps.Net())


def _batch_only(client):
    """The client's app with its sequential train handler broken: only the batch trainer works."""
    app = client.client_app()

    def refuse(msg, context):
        raise AssertionError("the vectorized backend ran the sequential handler")

    app._handlers["train"] = refuse
    return app


def _run(backend_name, client, tasks, **options):
    backend = make_backend(backend_name, **options)
    app = _batch_only(client) if backend_name == "vectorized" else client.client_app()
    backend.start(ClientAppSource(app=app))
    try:
        results = sorted(backend.run(tasks, None), key=lambda r: r.index)
    finally:
        backend.close()
    return [r.reply for r in results]


def _assert_close(vectorized, sequential, atol=1e-5):
    assert len(vectorized) == len(sequential)
    for v, s in zip(vectorized, sequential, strict=True):
        assert not v.has_error, v.error
        assert v.content["metrics"]["num-examples"] == s.content["metrics"]["num-examples"]
        for name, array in s.content.arrays().items():
            np.testing.assert_allclose(
                v.content.arrays()[name].numpy(), array.numpy(), atol=atol, rtol=0
            )


@pytest.mark.parametrize(
    "model", [vectorized_apps.Net, vectorized_apps.TanhNet], ids=["chain", "vmap"]
)
@pytest.mark.parametrize(
    "optimizer",
    [
        SGD(lr=0.05),
        SGD(lr=0.05, weight_decay=1e-2),
        SGD(lr=0.05, momentum=0.9, weight_decay=1e-3),
        Adam(lr=1e-3, weight_decay=1e-3),
    ],
    ids=["sgd", "sgd-decay", "sgd-momentum-decay", "adam"],
)
def test_one_round_of_20_nodes_matches_the_sequential_handler(optimizer, model):
    client = vectorized_apps.declaration(optimizer, epochs=2, model=model)
    tasks = _tasks(_global_arrays())
    sizes = {len(vectorized_apps.node_data(t.context)[1]) for t in tasks}
    assert len(sizes) > 10 and 0 in sizes  # sizes differ, short last batches, an empty node
    _assert_close(_run("vectorized", client, tasks), _run("inline", client, tasks))


@pytest.mark.parametrize(
    "model", [vectorized_apps.Net, vectorized_apps.TanhNet], ids=["chain", "vmap"]
)
@pytest.mark.parametrize(
    "optimizer", [SGD(lr=0.05), SGD(lr=0.05, momentum=0.9)], ids=["sgd", "momentum"]
)
def test_vectorized_training_is_bit_for_bit_deterministic(optimizer, model):
    client = vectorized_apps.declaration(optimizer, model=model)
    tasks = _tasks(_global_arrays())
    first, second = _run("vectorized", client, tasks), _run("vectorized", client, tasks)
    _assert_close(first, second, atol=0)


class _Flat(torch.nn.Module):
    def __init__(self, bias=True):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3, bias=bias)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_only_linear_relu_chains_get_the_hand_batched_steps():
    from pollinate.simulation._chain import linear_chain

    lin = torch.nn.Linear
    sequential = torch.nn.Sequential(
        lin(4, 8), torch.nn.ReLU(), lin(8, 8), torch.nn.ReLU(), lin(8, 2)
    )
    assert linear_chain(vectorized_apps.Net()) == ["fc", "out"]
    assert linear_chain(sequential) == ["0", "2", "4"]
    assert linear_chain(vectorized_apps.TanhNet()) is None  # tanh
    assert linear_chain(torch.nn.Sequential(lin(4, 8), lin(8, 2))) is None  # no ReLU between
    assert linear_chain(torch.nn.Sequential(lin(4, 8), torch.nn.ReLU())) is None  # ends on ReLU
    assert linear_chain(_Flat()) is None  # flatten
    assert linear_chain(torch.nn.Sequential(lin(4, 2, bias=False))) is None  # no bias


def test_a_tiny_memory_budget_trains_one_node_per_chunk_with_the_same_result():
    client = vectorized_apps.declaration(SGD(lr=0.05))
    app = client.client_app()
    assert app.trainer.chunk_size(1) == 1
    tasks = _tasks(_global_arrays())
    whole = _run("vectorized", client, tasks)
    chunked = _run("vectorized", client, tasks, memory_budget_mb=1e-6)
    _assert_close(chunked, whole)


def test_chunks_leave_room_for_momentum_a_rounds_config_may_turn_on():
    plain = vectorized_apps.declaration(SGD(lr=0.05)).client_app().trainer
    configurable = (
        VectorizedClient(
            vectorized_apps.Net,
            vectorized_apps.node_data,
            SGD(lr=0.05),
            batch_size=8,
            optimizer_config={"momentum": "momentum"},
        )
        .client_app()
        .trainer
    )
    budget, param_bytes = 10 * 2**20, (20 * 16 + 16 + 16 * 4 + 4) * 4
    # parameters, gradients and a working copy per node, plus the momentum buffer
    assert plain.chunk_size(budget) == budget // (3 * param_bytes)
    assert configurable.chunk_size(budget) == budget // (4 * param_bytes)


def test_a_node_whose_data_fails_gets_an_error_reply_and_the_others_train():
    def data(context):
        if context.node_id == 3:
            return [1, 2]
        return vectorized_apps.node_data(context)

    client = VectorizedClient(vectorized_apps.Net, data, SGD(lr=0.05))
    replies = _run("vectorized", client, _tasks(_global_arrays(), num_nodes=5))
    assert [r.has_error for r in replies] == [False, False, True, False, False]
    assert "two tensors with the same first dimension" in replies[2].error.reason


def test_a_plain_client_app_runs_as_inline_on_the_vectorized_backend():
    app = ClientApp()

    @app.train()
    def train(msg, context):
        return msg.reply(RecordDict({"arrays": msg.content.arrays()}))

    backend = make_backend("vectorized")
    backend.start(ClientAppSource(app=app))
    arrays = ArrayRecord({"w": np.ones(3, np.float32)})
    replies = [r.reply for r in backend.run(_tasks(arrays, num_nodes=3), None)]
    backend.close()
    assert all(r.content.arrays() == arrays for r in replies)


def test_run_simulation_vectorized_gives_the_inline_model_over_two_rounds():
    client = vectorized_apps.declaration(SGD(lr=0.05, momentum=0.5))
    models = {}
    for backend in ("inline", "vectorized"):
        result = run_simulation(
            client_app=_batch_only(client) if backend == "vectorized" else client.client_app(),
            num_nodes=NUM_NODES,
            strategy=FedAvg(fraction_train=0.5, fraction_evaluate=0.0),
            num_rounds=2,
            initial_arrays=_global_arrays(),
            backend=backend,
            run_id=7,
            verbose=False,
        )
        models[backend] = result.arrays
    for name, array in models["inline"].items():
        np.testing.assert_allclose(
            models["vectorized"][name].numpy(), array.numpy(), atol=1e-5, rtol=0
        )


def test_a_lifespan_makes_the_vectorized_backend_run_the_sequential_handler():
    client = vectorized_apps.declaration(SGD(lr=0.05))
    app = client.client_app()
    seen = []

    @app.lifespan()
    def count(context):
        seen.append(context.node_id)
        yield

    backend = make_backend("vectorized")
    backend.start(ClientAppSource(app=app))
    replies = [r.reply for r in backend.run(_tasks(_global_arrays(), num_nodes=4), None)]
    backend.close()
    assert seen == [1, 2, 3, 4]
    assert not any(r.has_error for r in replies)


@pytest.mark.parametrize("budget", [0, -1, float("inf"), float("nan")])
def test_a_memory_budget_that_is_not_a_positive_number_is_a_config_error(budget):
    with pytest.raises(ConfigError, match="memory-budget-mb must be a positive number"):
        make_backend("vectorized", memory_budget_mb=budget)


def test_segments_cover_the_active_nodes_in_runs_no_narrower_than_their_batches():
    from pollinate.simulation.vectorized import _segments

    widths = [32] * 40 + [30, 25, 17, 9, 8, 8, 3, 2, 1, 1]
    runs = _segments(widths, 32)
    assert 1 < len(runs) <= 16
    assert [a for a, _, _ in runs] == [0] + [b for _, b, _ in runs[:-1]]
    assert runs[-1][1] == len(widths)
    assert all(w >= max(widths[a:b]) for a, b, w in runs)
    assert _segments([32] * 10, 32) == [(0, 10, 32)]


def test_a_loss_that_is_already_reduced_is_one_clear_error_on_both_paths():
    mean_loss = torch.nn.functional.cross_entropy
    client = VectorizedClient(
        vectorized_apps.Net, vectorized_apps.node_data, SGD(0.1), loss_fn=mean_loss
    )
    tasks = _tasks(_global_arrays(), num_nodes=3)[1:]
    for replies in (_run("vectorized", client, tasks), _run("inline", client, tasks)):
        assert all("reduction='none'" in r.error.reason for r in replies)


def test_a_deadline_already_past_times_out_every_task_without_training():
    loaded = []

    def data(context):
        loaded.append(context.node_id)
        return vectorized_apps.node_data(context)

    client = VectorizedClient(vectorized_apps.Net, data, SGD(lr=0.05))
    backend = make_backend("vectorized")
    backend.start(ClientAppSource(app=_batch_only(client)))
    results = list(backend.run(_tasks(_global_arrays(), num_nodes=4), time.monotonic() - 1))
    backend.close()
    assert loaded == []
    assert sorted(r.index for r in results) == [0, 1, 2, 3]
    assert all(r.reply.error.code == ErrorCode.TIMEOUT for r in results)


def test_the_evaluate_handler_reports_loss_accuracy_and_examples():
    client = VectorizedClient(
        vectorized_apps.Net,
        vectorized_apps.node_data,
        SGD(0.1),
        eval_data_fn=vectorized_apps.node_data,
    )
    task = _tasks(_global_arrays(), num_nodes=3)[2]
    message = Message.create(RecordDict({"arrays": task.message.content.arrays()}), 3, "evaluate")
    metrics = client.client_app()(message, task.context).content["metrics"]
    assert metrics["num-examples"] == 14
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["loss"] > 0


def _with_lr(n):
    """The round's config sets lr 0.2 for odd nodes; even nodes get none."""
    return {"lr": 0.2} if n % 2 else {}


@pytest.mark.parametrize(
    "optimizer", [SGD(lr=0.05), Adam(lr=0.05, weight_decay=1e-3)], ids=["sgd", "adam"]
)
def test_a_round_config_lr_trains_each_node_as_the_sequential_path_with_that_lr(optimizer):
    configured = dataclasses.replace(
        vectorized_apps.declaration(optimizer), optimizer_config={"lr": "lr"}
    )
    fixed = vectorized_apps.declaration(dataclasses.replace(optimizer, lr=0.2))
    declared = vectorized_apps.declaration(optimizer)
    tasks = _tasks(_global_arrays(), config=_with_lr)
    odd, even = tasks[0::2], tasks[1::2]
    vectorized = _run("vectorized", configured, tasks)
    _assert_close(vectorized[0::2], _run("inline", fixed, odd))
    _assert_close(vectorized[1::2], _run("inline", declared, even))
    sequential = _run("inline", configured, tasks)
    _assert_close(sequential[0::2], _run("inline", fixed, odd), atol=0)
    _assert_close(sequential[1::2], _run("inline", declared, even), atol=0)


def test_run_simulation_passes_the_strategys_train_config_lr_to_the_optimizer():
    from pollinate import ServerApp

    def server(lr):
        app = ServerApp()

        @app.main()
        def main(grid, context):
            strategy = FedAvg(fraction_train=0.5, fraction_evaluate=0.0)
            config = {"lr": lr} if lr is not None else {}
            return strategy.start(grid, _global_arrays(), num_rounds=2, train_config=config)

        return app

    configured = dataclasses.replace(
        vectorized_apps.declaration(SGD(lr=0.05)), optimizer_config={"lr": "lr"}
    )
    fixed = vectorized_apps.declaration(SGD(lr=0.2))
    models = [
        run_simulation(server(lr), app, num_nodes=NUM_NODES, backend=b, run_id=3, verbose=False)
        for lr, app, b in [
            (0.2, _batch_only(configured), "vectorized"),
            (None, fixed.client_app(), "inline"),
        ]
    ]
    for name, array in models[1].arrays.items():
        np.testing.assert_allclose(models[0].arrays[name].numpy(), array.numpy(), atol=1e-5, rtol=0)


def test_an_unknown_optimizer_setting_is_one_clear_error():
    with pytest.raises(AppError, match=r"'learning_rate'.*it has: lr, momentum, weight_decay"):
        VectorizedClient(
            vectorized_apps.Net,
            vectorized_apps.node_data,
            SGD(lr=0.1),
            optimizer_config={"learning_rate": "lr"},
        )
    with pytest.raises(AppError, match=r"'betas'.*it has: lr, eps, weight_decay"):
        VectorizedClient(
            vectorized_apps.Net, vectorized_apps.node_data, Adam(), optimizer_config={"betas": "b"}
        )


@pytest.mark.parametrize(
    "value, reason",
    [
        ("fast", "'lr' sets the optimizer's lr and must be a number"),
        (-1.0, "Invalid learning rate"),
    ],
)
def test_a_bad_lr_in_the_round_config_is_an_error_reply_on_both_paths(value, reason):
    client = dataclasses.replace(
        vectorized_apps.declaration(SGD(lr=0.05)), optimizer_config={"lr": "lr"}
    )
    tasks = _tasks(_global_arrays(), num_nodes=3, config=lambda n: {"lr": value})
    for backend in ("vectorized", "inline"):
        replies = _run(backend, client, tasks)
        assert all(reason in r.error.reason for r in replies), replies[0].error


def test_a_node_trains_on_the_device_its_context_names():
    client = vectorized_apps.declaration(SGD(lr=0.05))
    arrays = _global_arrays()
    on_cpu = _run("vectorized", client, _tasks(arrays, node_config={"device": "cpu"}))
    _assert_close(on_cpu, _run("vectorized", client, _tasks(arrays)), atol=0)


@pytest.mark.parametrize("device", ["cuda:0", "tpu:3"])
def test_an_unusable_device_is_one_clear_error_reply_on_both_paths(device):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    client = vectorized_apps.declaration(SGD(lr=0.05))
    tasks = _tasks(_global_arrays(), num_nodes=3, node_config={"device": device})
    for backend in ("vectorized", "inline"):
        replies = _run(backend, client, tasks)
        reasons = [r.error.reason for r in replies]
        assert all(f"node_config device {device!r} is not usable here" in r for r in reasons)
        assert all("Traceback" not in r and "e.g. 'cpu'" in r for r in reasons)


def test_a_vectorized_clients_app_runs_on_the_process_backend_as_a_plain_client_app(apps_dir):
    models = [
        run_simulation(
            client_app=app,
            num_nodes=NUM_NODES,
            strategy=FedAvg(fraction_train=0.5, fraction_evaluate=0.0),
            num_rounds=2,
            initial_arrays=_global_arrays(),
            backend=backend,
            backend_options={"num_workers": 2} if backend == "process" else None,
            app_dir=apps_dir,
            run_id=7,
            verbose=False,
        ).arrays
        for app, backend in [
            ("vectorized_apps:app", "process"),
            (vectorized_apps.app, "inline"),
        ]
    ]
    for name, array in models[1].items():  # workers run torch with one thread: float rounding
        np.testing.assert_allclose(models[0][name].numpy(), array.numpy(), atol=1e-6, rtol=0)


def _soft_labels(context):
    """node_data with its classes as probabilities (cross-entropy's soft targets)."""
    x, y = vectorized_apps.node_data(context)
    return x, torch.nn.functional.one_hot(y, 4).float() * 0.9 + 0.025


def test_a_chain_model_with_soft_targets_trains_as_the_sequential_handler():
    client = VectorizedClient(vectorized_apps.Net, _soft_labels, SGD(lr=0.05), batch_size=8)
    tasks = _tasks(_global_arrays())
    _assert_close(_run("vectorized", client, tasks), _run("inline", client, tasks))


def test_a_vectorized_clients_app_runs_deployed_as_a_plain_client_app():
    """Over a real link on 127.0.0.1 the declaration is just a ClientApp: inline's model."""
    from pollinate.deploy import Backoff, Link, run_node

    def fedavg():
        return FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=3)

    inline = run_simulation(
        client_app=vectorized_apps.by_partition,
        num_nodes=3,
        strategy=fedavg(),
        num_rounds=2,
        initial_arrays=_global_arrays(),
        verbose=False,
    )
    link = Link("127.0.0.1:0", credentials=None, heartbeat_s=0.2, node_timeout_s=5.0)
    link.start()
    nodes = [
        threading.Thread(
            target=run_node,
            args=(f"127.0.0.1:{link.port}", vectorized_apps.by_partition),
            kwargs={
                "node_config": {"partition-id": partition, "num-partitions": 3},
                "backoff": Backoff(initial_s=0.05, max_s=0.2, give_up_s=5),
            },
            daemon=True,
        )
        for partition in range(3)
    ]
    try:
        for node in nodes:
            node.start()
        grid = link.grid(run_id=3, run_config={})
        grid.wait_for_nodes(3, timeout_s=20)
        deployed = fedavg().start(grid, _global_arrays(), num_rounds=2)
    finally:
        link.stop(grace_s=0.5)
        for node in nodes:
            node.join(timeout=10)
    assert all(r.train.num_ok == 3 for r in deployed.rounds[1:])
    for name, array in inline.arrays.items():
        np.testing.assert_allclose(deployed.arrays[name].numpy(), array.numpy(), atol=1e-6)
