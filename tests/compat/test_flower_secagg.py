"""Flower's SecAgg+ code (LegacyContext, DefaultWorkflow, SecAggPlusWorkflow, secaggplus_mod).

The ServerApp and ClientApp are written as Flower's flower-secure-aggregation example
writes them, with only the imports changed; each run must give the model the same classic
strategy gives without SecAgg+, within the quantization error, and the History Flower
users read.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading

import numpy as np
import pytest

import pollinate.compat.flwr as fl
from pollinate.compat.flwr import app as flwr_app
from pollinate.compat.flwr import clientapp as flwr_clientapp
from pollinate.compat.flwr._missing import UnsupportedName
from pollinate.compat.flwr.client import ClientApp, NumPyClient
from pollinate.compat.flwr.client.mod import LocalDpMod, fixedclipping_mod, secaggplus_mod
from pollinate.compat.flwr.common import Context, Metrics, ndarrays_to_parameters
from pollinate.compat.flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from pollinate.compat.flwr.server.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedMedian,
)
from pollinate.compat.flwr.server.workflow import (
    DefaultWorkflow,
    SecAggPlusWorkflow,
    SecAggWorkflow,
)
from pollinate.deploy import make_dev_certs, start_client, start_server
from pollinate.errors import ConfigError, RoundError
from pollinate.privacy import SecAggPlus, dp_fixed_clip
from pollinate.simulation import run_simulation
from pollinate.strategy import FedAvg as NativeFedAvg
from pollinate.strategy import chain

NODES, ROUNDS = 5, 3
SHAPES = [(3, 4), (4,)]
CLIP, LEVELS = 8.0, 2**22  # Flower's defaults
STEP = 2 * CLIP / (LEVELS - 1)
"""One quantization level: the secure mean is off by less than this per coordinate."""


def delta_of(node_id: int, server_round: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng([node_id, server_round]).uniform(-1.0, 1.0, shape)


class SecAggClient(NumPyClient):
    """Adds its own update to the model; a client named in the config's ``drop`` fails.

    Its id is its partition's plus one (the same in simulation and deployed).
    """

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def fit(self, parameters, config):
        if str(self.node_id) in str(config.get("drop", "")).split(","):
            raise RuntimeError("this client drops out")
        server_round = int(config["round"])
        new = [
            (p + delta_of(self.node_id, server_round, p.shape)).astype(p.dtype) for p in parameters
        ]
        claim = {"secagg.count": 50} if config.get("claim") else {}  # a client's lie, see below
        return new, 10 * self.node_id, {"train_loss": 1.0, **claim}

    def evaluate(self, parameters, config):
        loss = float(sum(np.abs(p).sum() for p in parameters)) + self.node_id
        return loss, 10 * self.node_id, {"accuracy": 0.1 * self.node_id}


def client_fn(context: Context):
    return SecAggClient(int(context.node_config["partition-id"]) + 1).to_client()


# Flower ClientApp, as in Flower's example
client_app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
plain_client_app = ClientApp(client_fn=client_fn)


def weighted_average(metrics: list[tuple[int, Metrics]]) -> Metrics:
    accuracies = [num_examples * m["accuracy"] for num_examples, m in metrics]
    return {"accuracy": sum(accuracies) / sum(n for n, _ in metrics)}


def server_app(fit_workflow_fn, runs: list, drop: str = "", strategy_cls=FedAvg) -> ServerApp:
    """Flower's ServerApp: FedAvg in a LegacyContext run by DefaultWorkflow."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        models: list = []

        def evaluate_fn(server_round, parameters, config):
            models.append([p.copy() for p in parameters])
            return float(server_round), {"centralized": 1.0}

        strategy = strategy_cls(
            fraction_fit=1.0,
            min_fit_clients=NODES,
            fraction_evaluate=1.0,
            min_available_clients=NODES,
            evaluate_fn=evaluate_fn,
            on_fit_config_fn=lambda r: {"round": r, "drop": drop},
            evaluate_metrics_aggregation_fn=weighted_average,
            initial_parameters=ndarrays_to_parameters([np.zeros(s, np.float32) for s in SHAPES]),
        )
        context = LegacyContext(
            context=context, config=ServerConfig(num_rounds=ROUNDS), strategy=strategy
        )
        workflow = DefaultWorkflow(fit_workflow=fit_workflow_fn())
        workflow(grid, context)
        runs.append((models, context.history))

    return app


def run(fit_workflow_fn, backend="inline", drop="", tmp_path=None, strategy_cls=FedAvg):
    """One simulation of the Flower-style apps: (each round's model, the History)."""
    runs: list = []
    secure = fit_workflow_fn() is not None
    run_simulation(
        server_app(fit_workflow_fn, runs, drop, strategy_cls),
        client_app if secure else plain_client_app,
        num_nodes=NODES,
        backend=backend,
        backend_options={"num_workers": 2} if backend == "process" else None,
        out_dir=tmp_path,
        verbose=False,
    )
    (outcome,) = runs
    return outcome


def assert_close_to_plain(secure_models, plain_models, rounds=ROUNDS):
    assert len(secure_models) == len(plain_models) == rounds + 1
    for r, (secure, plain) in enumerate(zip(secure_models, plain_models, strict=True)):
        for s, p in zip(secure, plain, strict=True):
            assert np.max(np.abs(s - p)) <= r * STEP + 1e-5
        assert r == 0 or not np.allclose(secure[0], secure_models[0][0])


@pytest.mark.parametrize("backend", ["inline", "process"])
def test_flower_secagg_code_matches_the_same_fedavg_without_it(backend, tmp_path):
    plain_models, plain = run(lambda: None, tmp_path=tmp_path / "plain")
    workflow = lambda: SecAggPlusWorkflow(  # noqa: E731
        num_shares=3, reconstruction_threshold=2, max_weight=100
    )
    secure_models, history = run(workflow, backend, tmp_path=tmp_path / "secure")
    assert_close_to_plain(secure_models, plain_models)
    # The History Flower users read: evaluation is in the clear, as in Flower.
    assert [r for r, _ in history.losses_distributed] == [1, 2, 3]
    np.testing.assert_allclose(
        [v for _, v in history.losses_distributed],
        [v for _, v in plain.losses_distributed],
        atol=1e-3,
    )
    assert history.metrics_distributed["accuracy"] == plain.metrics_distributed["accuracy"]
    assert history.losses_centralized == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)]
    assert history.metrics_centralized == plain.metrics_centralized
    assert history.metrics_distributed_fit["secagg.count"] == [(1, 5), (2, 5), (3, 5)]


def test_flower_s_run_simulation_and_sec_agg_workflow_give_the_same_model(tmp_path):
    plain_models, _ = run(lambda: None, tmp_path=tmp_path / "plain")
    runs: list = []
    workflow = lambda: SecAggWorkflow(reconstruction_threshold=0.6)  # noqa: E731
    fl.simulation.run_simulation(
        server_app=server_app(workflow, runs),
        client_app=client_app,
        num_supernodes=NODES,
    )
    ((models, history),) = runs
    assert_close_to_plain(models, plain_models)
    assert history.metrics_distributed_fit["secagg.count"][-1] == (ROUNDS, NODES)


def test_dropouts_within_the_threshold_are_survived(tmp_path):
    """5 shares, threshold 3: two clients that fail their fit leave the other three's mean."""
    plain_models, _ = run(lambda: None, drop="2,4", tmp_path=tmp_path / "plain")
    workflow = lambda: SecAggPlusWorkflow(num_shares=5, reconstruction_threshold=3)  # noqa: E731
    models, history = run(workflow, drop="2,4", tmp_path=tmp_path / "secure")
    assert_close_to_plain(models, plain_models)
    assert history.metrics_distributed_fit["secagg.count"] == [(1, 3), (2, 3), (3, 3)]


def test_a_dropout_is_a_failure_of_aggregate_fit_as_in_flower(tmp_path):
    """With accept_failures=False a round that lost a client keeps the model."""

    class Strict(FedAvg):
        def __init__(self, **options):
            super().__init__(accept_failures=False, **options)

    workflow = lambda: SecAggPlusWorkflow(num_shares=5, reconstruction_threshold=3)  # noqa: E731
    models, history = run(workflow, drop="2", tmp_path=tmp_path, strategy_cls=Strict)
    for model in models:
        for array in model:
            np.testing.assert_array_equal(array, 0.0)
    assert history.metrics_distributed_fit == {}


def test_a_client_above_max_weight_is_left_out_with_an_error_naming_it(tmp_path, caplog):
    """Clients 4 and 5 report 40 and 50 examples, above max_weight=30."""
    workflow = lambda: SecAggPlusWorkflow(5, 3, max_weight=30)  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="pollinate"):
        _, history = run(workflow, tmp_path=tmp_path)
    assert history.metrics_distributed_fit["secagg.count"] == [(1, 3), (2, 3), (3, 3)]
    assert "num-examples=50 must be a whole number from 1 to max_weight=30" in caplog.text


def test_one_dropout_too_many_stops_the_run_with_one_clear_error(tmp_path):
    workflow = lambda: SecAggPlusWorkflow(num_shares=5, reconstruction_threshold=3)  # noqa: E731
    with pytest.raises(RoundError, match="too many nodes dropped"):
        run(workflow, drop="1,2,4", tmp_path=tmp_path)


def test_flower_secagg_code_runs_over_the_link_with_tls(tmp_path):
    plain_models, _ = run(lambda: None, tmp_path=tmp_path / "plain")
    certs = make_dev_certs(tmp_path / "certs")
    listening, port, runs = threading.Event(), [], []
    workflow = lambda: SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2)  # noqa: E731

    def serve():
        start_server(
            "127.0.0.1:0",
            server_app=server_app(workflow, runs),
            certs=certs.ca_cert.parent,
            min_nodes=NODES,
            wait_s=30,
            out_dir=tmp_path / "run",
            on_listening=lambda p: (port.append(p), listening.set()),
            verbose=False,
        )

    server = threading.Thread(target=serve)
    server.start()
    assert listening.wait(10)
    nodes = [
        threading.Thread(
            target=start_client,
            args=(f"localhost:{port[0]}", client_app),
            kwargs={
                "root_cert": certs.ca_cert,
                "give_up_s": 10,
                "node_config": {"partition-id": partition, "num-partitions": NODES},
            },
        )
        for partition in range(NODES)
    ]
    for node in nodes:
        node.start()
    server.join(120)
    for node in nodes:
        node.join(10)
        assert not node.is_alive()
    ((models, history),) = runs
    assert_close_to_plain(models, plain_models)
    assert history.metrics_distributed_fit["secagg.count"] == [(1, 5), (2, 5), (3, 5)]


def test_the_plain_default_workflow_is_server_app_with_strategy_and_config(tmp_path):
    models, history = run(lambda: None, tmp_path=tmp_path / "workflow")
    runs: list = []

    def evaluate_fn(server_round, parameters, config):
        runs.append([p.copy() for p in parameters])
        return float(server_round), {"centralized": 1.0}

    strategy = FedAvg(
        min_fit_clients=NODES,
        min_available_clients=NODES,
        evaluate_fn=evaluate_fn,
        on_fit_config_fn=lambda r: {"round": r},
        evaluate_metrics_aggregation_fn=weighted_average,
        initial_parameters=ndarrays_to_parameters([np.zeros(s, np.float32) for s in SHAPES]),
    )
    app = ServerApp(config=ServerConfig(num_rounds=ROUNDS), strategy=strategy)
    result = run_simulation(
        app, plain_client_app, num_nodes=NODES, out_dir=tmp_path / "app", verbose=False
    )
    for ours, theirs in zip(models, runs, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
    assert history.losses_distributed == fl.server.history_from_result(result).losses_distributed


def test_client_fit_metrics_stay_on_the_clients_and_the_aggregation_fn_is_not_called(
    tmp_path, caplog
):
    called: list = []

    class WithFitMetrics(FedAvg):
        def __init__(self, **options):
            super().__init__(fit_metrics_aggregation_fn=called.append, **options)

    workflow = lambda: SecAggPlusWorkflow(3, 2)  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="pollinate.flwr"):
        run(workflow, tmp_path=tmp_path, strategy_cls=WithFitMetrics)
    assert not called
    assert "fit_metrics_aggregation_fn is not called under SecAgg+" in caplog.text


def test_client_side_clipping_with_secagg_is_the_native_chain_with_secure_aggregation(tmp_path):
    """Flower's fl-dp-sa example: the clients clip, SecAgg+ sums, the server adds the noise."""
    nodes, seed = 20, 3  # half of 20: a round below 3 nodes is unlikely enough to be let run
    dp_client_app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod, fixedclipping_mod])
    start = [np.zeros(s, np.float32) for s in SHAPES]
    app = ServerApp()
    runs: list = []

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        models: list = []

        def evaluate_fn(server_round, parameters, config):
            models.append([p.copy() for p in parameters])

        strategy = FedAvg(
            fraction_fit=0.5,
            fraction_evaluate=0.0,
            min_fit_clients=3,
            evaluate_fn=evaluate_fn,
            on_fit_config_fn=lambda r: {"round": r},
            initial_parameters=ndarrays_to_parameters(start),
        )
        strategy = DifferentialPrivacyClientSideFixedClipping(
            strategy, noise_multiplier=0.5, clipping_norm=1.0, num_sampled_clients=10, seed=seed
        )
        context = LegacyContext(
            context=context, config=ServerConfig(num_rounds=ROUNDS), strategy=strategy
        )
        fit_workflow = SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2)
        DefaultWorkflow(fit_workflow=fit_workflow)(grid, context)
        runs.append((models, context.history))

    run_simulation(app, dp_client_app, num_nodes=nodes, out_dir=tmp_path / "flower", verbose=False)
    ((models, history),) = runs

    native_models: list = []
    native = NativeFedAvg(
        fraction_train=0.5,
        fraction_evaluate=0.0,
        min_train_nodes=3,
        aggregation=chain(dp_fixed_clip(1.0, 0.5, clipped_on="nodes", seed=seed)),
        secure_aggregation=SecAggPlus(3, 2),
        train_config=lambda r: {"round": r},
        evaluate_fn=lambda r, arrays: native_models.append(arrays.to_numpy()),
        initial_arrays=fl.common.ArrayRecord(start),
    )
    result = run_simulation(
        client_app=dp_client_app,
        strategy=native,
        num_rounds=ROUNDS,
        num_nodes=nodes,
        out_dir=tmp_path / "native",
        verbose=False,
    )
    for ours, theirs in zip(models, native_models, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-4)
    assert history.metrics_distributed_fit["secagg.count"] == [
        (r, m["secagg.count"]) for r, m in result.metrics("train").items()
    ]
    assert history.metrics_distributed_fit["privacy.epsilon"][-1][1] > 0


def test_the_example_s_console_handler_update_sets_the_level_shown():
    from pollinate.compat.flwr.common.logger import logger, update_console_handler

    update_console_handler(logging.DEBUG, True, True)
    try:
        assert logger.level == logging.DEBUG
    finally:
        update_console_handler(logging.INFO)


def client_clipped_model(claim: bool, tmp_path) -> list:
    """The final model of client-side clipping without SecAgg+ (``claim``: clients lie)."""
    models = []
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        def evaluate_fn(server_round, parameters, config):
            models.append([p.copy() for p in parameters])

        strategy = FedAvg(
            fraction_evaluate=0.0,
            min_fit_clients=NODES,
            evaluate_fn=evaluate_fn,
            on_fit_config_fn=lambda r: {"round": r, "claim": claim},
            initial_parameters=ndarrays_to_parameters([np.zeros(s, np.float32) for s in SHAPES]),
        )
        strategy = DifferentialPrivacyClientSideFixedClipping(strategy, 0.5, 1.0, NODES, seed=3)
        context = LegacyContext(context=context, config=ServerConfig(ROUNDS), strategy=strategy)
        DefaultWorkflow()(grid, context)

    clipped = ClientApp(client_fn=client_fn, mods=[fixedclipping_mod])
    run_simulation(app, clipped, num_nodes=NODES, out_dir=tmp_path, verbose=False)
    return models[-1]


def test_a_client_cannot_pass_for_a_secure_sum_without_secagg(tmp_path):
    """A fit metric ``secagg.count`` from a client weighs nothing: only SecAgg+'s sum has one."""
    honest = client_clipped_model(False, tmp_path / "honest")
    for lied, kept in zip(client_clipped_model(True, tmp_path / "lie"), honest, strict=True):
        np.testing.assert_array_equal(lied, kept)


def test_the_mods_are_in_both_mod_modules():
    assert fl.client.mod.secaggplus_mod is secaggplus_mod
    assert flwr_clientapp.mod.secaggplus_mod is secaggplus_mod
    assert fl.client.mod.secagg_mod is flwr_clientapp.mod.secagg_mod


def test_flower_s_parameters_map_onto_secaggplus(caplog):
    with caplog.at_level(logging.WARNING, logger="pollinate.flwr"):
        even = SecAggPlusWorkflow(num_shares=6, reconstruction_threshold=4)
    assert even.protocol.params.num_shares == 7
    assert "num_shares=6 is even" in caplog.text
    every = SecAggPlusWorkflow(num_shares=1, reconstruction_threshold=1)
    assert (every.protocol.params.num_shares, every.protocol.params.reconstruction_threshold) == (
        1.0,
        1.0,
    )
    assert SecAggPlusWorkflow(num_shares=0.5, reconstruction_threshold=0.75).num_shares == 0.5
    assert SecAggWorkflow(reconstruction_threshold=3).protocol.params.num_shares == 1.0
    assert SecAggPlusWorkflow(3, 2, timeout=5.0).protocol.params.timeout == 5.0


def legacy_context(strategy) -> LegacyContext:
    context = flwr_app.Context(
        run_id=1, node_id=0, node_config={}, state=flwr_app.RecordDict(), run_config={}
    )
    return LegacyContext(context=context, config=ServerConfig(num_rounds=1), strategy=strategy)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: SecAggPlusWorkflow(5, 2), "more than half"),
        (lambda: SecAggPlusWorkflow(2, 2), "more than 2"),
        (lambda: SecAggPlusWorkflow("3", 2), "num_shares must be an int or a float"),
        (lambda: SecAggPlusWorkflow(3, 2, modulus_range=2**32), "overflow.*raise modulus_range"),
        (lambda: SecAggPlusWorkflow(3, 2, modulus_range=1000), "power of two"),
        (lambda: SecAggPlusWorkflow(3, 2, max_weight=0.5), "max_weight"),
        (lambda: DefaultWorkflow(evaluate_workflow=lambda g, c: None), "evaluate_workflow"),
        (lambda: DefaultWorkflow(fit_workflow=lambda g, c: None), "SecAggPlusWorkflow or"),
        (lambda: DefaultWorkflow()(None, None), "needs a LegacyContext"),
        (lambda: SecAggPlusWorkflow(3, 2)(None, legacy_context(FedAvg())), "DefaultWorkflow"),
        (
            lambda: DefaultWorkflow(SecAggPlusWorkflow(3, 2))(None, legacy_context(FedMedian())),
            "FedMedian needs each client's update",
        ),
        (
            lambda: DefaultWorkflow(SecAggPlusWorkflow(3, 2))(
                None, legacy_context(DifferentialPrivacyServerSideFixedClipping(FedAvg(), 1, 1, 2))
            ),
            "needs each client's update.*dp_fixed_clip",
        ),
        (
            lambda: DefaultWorkflow(SecAggPlusWorkflow(3, 2))(None, legacy_context(NativeFedAvg())),
            r"FedAvg\(secure_aggregation=pollinate.privacy.SecAggPlus",
        ),
        (lambda: legacy_context(object()), "flwr.serverapp.strategy"),
    ],
)
def test_a_bad_setting_is_one_clear_error(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_overriding_flower_s_stages_is_refused():
    with pytest.raises(ConfigError, match=r"overrides setup_stage.*cannot be overridden"):

        class WithLogs(SecAggPlusWorkflow):
            def setup_stage(self, grid, context, state):
                return True


def test_flower_s_workflow_internals_are_one_clear_error():
    for module in (
        "pollinate.compat.flwr.server.workflow.secure_aggregation.secaggplus_workflow",
        "pollinate.compat.flwr.common.secure_aggregation.quantization",
        "pollinate.compat.flwr.server.compat.legacy_context",
    ):
        sys.modules.pop(module, None)
        with pytest.raises(UnsupportedName, match="SecAggPlusWorkflow"):
            importlib.import_module(module)


# -- errors in Flower's names ----------------------------------------------------------------


def secure_run_error(mods, workflow=None, **options) -> str:
    """The error of a SecAgg+ run of FedAvg(**options) with clients behind ``mods``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(
            fraction_evaluate=0.0,
            initial_parameters=ndarrays_to_parameters([np.zeros(s, np.float32) for s in SHAPES]),
            **({"min_fit_clients": NODES, "min_available_clients": NODES} | options),
        )
        context = LegacyContext(context=context, config=ServerConfig(ROUNDS), strategy=strategy)
        fit = workflow or SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2)
        DefaultWorkflow(fit_workflow=fit)(grid, context)

    clients = ClientApp(client_fn=client_fn, mods=mods)
    with pytest.raises((RoundError, ConfigError)) as caught:
        run_simulation(app, clients, num_nodes=NODES, verbose=False)
    return str(caught.value)


def test_a_wrong_mod_order_is_told_in_flower_s_mod_names():
    message = secure_run_error([fixedclipping_mod, secaggplus_mod])
    assert "mods=[secaggplus_mod, fixedclipping_mod]" in message
    assert "fixed_clipping_mod" not in message


def test_a_missing_secaggplus_mod_is_imported_from_the_compat_module():
    message = secure_run_error([])
    assert "from pollinate.compat.flwr.client.mod" in message
    assert "from pollinate.privacy" not in message


def test_a_local_dp_mod_without_secaggplus_mod_is_not_said_to_run_outside_it():
    message = secure_run_error([LocalDpMod(0.5, 1.0, 4.0, 1e-5)])
    assert "LocalDpMod" in message and "local_dp_mod" not in message
    assert "missing or listed after it" in message


def test_flower_s_default_min_fit_clients_is_refused_before_round_1_in_flower_s_names():
    with pytest.raises(ConfigError) as caught:
        SecAggPlusWorkflow(7, 4).for_strategy(FedAvg(min_fit_clients=2))
    message = str(caught.value)
    assert "raise min_fit_clients to 7" in message and "min_train_nodes" not in message


def test_a_dp_run_likely_to_draw_a_round_below_num_shares_is_refused_in_flower_s_names():
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(
            fraction_fit=0.5,
            fraction_evaluate=0.0,
            min_fit_clients=3,
            initial_parameters=ndarrays_to_parameters([np.zeros(s, np.float32) for s in SHAPES]),
        )
        strategy = DifferentialPrivacyClientSideFixedClipping(strategy, 0.5, 1.0, 5, seed=3)
        context = LegacyContext(context=context, config=ServerConfig(ROUNDS), strategy=strategy)
        fit = SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2)
        DefaultWorkflow(fit_workflow=fit)(grid, context)

    clients = ClientApp(client_fn=client_fn, mods=[secaggplus_mod, fixedclipping_mod])
    with pytest.raises(ConfigError) as caught:
        run_simulation(app, clients, num_nodes=10, verbose=False)
    message = str(caught.value)
    assert "fraction_fit=0.5 of 10 nodes" in message and f"over {ROUNDS} rounds" in message
    assert "fraction_train" not in message
