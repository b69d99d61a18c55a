"""Flower's DP wrappers and mods on pollinate.privacy: Flower-style code, the native result.

Each Flower-style run (only the imports changed, plus pollinate's ``seed=`` for a
reproducible draw) must give the very model the native chain gives with the same seed:
the clipping, noise, Poisson sample and accountant are pollinate's.
"""

from __future__ import annotations

import logging
import pickle
from types import SimpleNamespace

import numpy as np
import pytest

import pollinate
import pollinate.compat.flwr as fl
from pollinate import ArrayRecord, MetricRecord, RecordDict, ServerApp
from pollinate.compat.flwr import app as flwr_app
from pollinate.compat.flwr import clientapp as flwr_clientapp
from pollinate.compat.flwr import serverapp as flwr_serverapp
from pollinate.compat.flwr._missing import UnsupportedName
from pollinate.compat.flwr.client.mod import LocalDpMod, fixedclipping_mod
from pollinate.compat.flwr.common import ndarrays_to_parameters
from pollinate.compat.flwr.server.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedMedian,
)
from pollinate.compat.flwr.serverapp import strategy as flwr_strategy
from pollinate.errors import ConfigError
from pollinate.privacy import (
    dp_adaptive_clip,
    dp_fixed_clip,
    epsilon,
    fixed_clipping_mod,
    local_dp_mod,
)
from pollinate.simulation import run_simulation
from pollinate.strategy import chain, server_momentum

NODES, ROUNDS, FRACTION, SEED = 8, 3, 0.5, 7
STEP = 0.5
ROUND = "server-round"
"""Each node moves the model halfway toward its own id: deltas of norm up to ~8."""


def pull(array: np.ndarray, node_id: int) -> np.ndarray:
    return (array + STEP * (node_id - array)).astype(array.dtype)


# The native reference: pollinate's FedAvg with the chain, pollinate's mods.


def native_model(piece=None, mods=(), fraction=FRACTION, optimizer=None, minimum=2) -> np.ndarray:
    """The final model of the native run (``piece``: a DP aggregator, or plain FedAvg)."""
    client = pollinate.ClientApp(mods=list(mods))

    @client.train()
    def train(msg, context):
        arrays = msg.content.arrays()
        new = ArrayRecord({k: pull(a.numpy(), context.node_id) for k, a in arrays.items()})
        metrics = MetricRecord({"num-examples": 10 * context.node_id})
        return msg.reply(RecordDict({"arrays": new, "metrics": metrics}))

    server = ServerApp()

    @server.main()
    def main(grid, context):
        pieces = [p for p in (piece, optimizer) if p is not None]
        strategy = pollinate.FedAvg(
            fraction_train=fraction,
            fraction_evaluate=0.0,
            min_train_nodes=minimum,
            aggregation=chain(*pieces) if pieces else None,
        )
        start = ArrayRecord({"w": np.zeros(4, np.float32)})
        return strategy.start(grid, start, num_rounds=ROUNDS)

    result = run_simulation(server, client, num_nodes=NODES, verbose=False)
    SENT[:] = [r.train.num_ok + r.train.num_failed for r in result.rounds]
    return result.arrays["w"].numpy()


SENT: list[int] = []
"""How many nodes each round of the last native run trained."""


# The classic API (flwr.server.strategy, flwr.client.mod), written as Flower's docs do.


class Pull(fl.client.NumPyClient):
    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def fit(self, parameters, config):
        CONFIGS.append(dict(config))
        return [pull(p, self.node_id) for p in parameters], 10 * self.node_id, {}

    def evaluate(self, parameters, config):
        return 0.0, 1, {}


CONFIGS: list[dict] = []


def client_fn(context):
    return Pull(context.node_id).to_client()


def flower_fedavg(models: list, fraction: float = FRACTION, **options) -> FedAvg:
    """FedAvg as a Flower script builds it; ``models`` collects the model of every round."""

    def evaluate_fn(server_round, parameters, config):
        models.append(parameters[0].copy())
        return None

    return FedAvg(
        fraction_fit=fraction,
        fraction_evaluate=0.0,
        initial_parameters=ndarrays_to_parameters([np.zeros(4, np.float32)]),
        evaluate_fn=evaluate_fn,
        **options,
    )


def classic_run(strategy, mods=()) -> None:
    """Flower's ``run_simulation`` with a ServerApp(server_fn) and ClientApp(client_fn, mods)."""
    CONFIGS.clear()

    def server_fn(context):
        config = fl.server.ServerConfig(num_rounds=ROUNDS)
        return fl.server.ServerAppComponents(strategy=strategy, config=config)

    fl.simulation.run_simulation(
        server_app=fl.server.ServerApp(server_fn=server_fn),
        client_app=fl.client.ClientApp(client_fn=client_fn, mods=list(mods)),
        num_supernodes=NODES,
    )


def test_server_side_fixed_clipping_is_the_native_chain():
    models: list = []
    strategy = DifferentialPrivacyServerSideFixedClipping(
        flower_fedavg(models), noise_multiplier=1.0, clipping_norm=0.5, num_sampled_clients=4,
        seed=SEED,
    )  # fmt: skip
    history = fl.simulation.start_simulation(
        client_fn=client_fn,
        num_clients=NODES,
        config=fl.server.ServerConfig(num_rounds=ROUNDS),
        strategy=strategy,
    )
    native = native_model(dp_fixed_clip(0.5, 1.0, seed=SEED))
    np.testing.assert_allclose(models[-1], native, rtol=1e-6)
    assert not np.allclose(native, native_model())  # the noise and clip did something
    spent = [eps for _, eps in history.metrics_distributed_fit["privacy.epsilon"]]
    assert spent == [epsilon([(FRACTION, 1.0)] * t, 1e-5) for t in (1, 2, 3)]


def test_client_side_fixed_clipping_with_fixedclipping_mod_is_the_native_chain():
    models: list = []
    strategy = DifferentialPrivacyClientSideFixedClipping(
        flower_fedavg(models), noise_multiplier=0.8, clipping_norm=0.5, num_sampled_clients=4,
        seed=SEED,
    )  # fmt: skip
    classic_run(strategy, mods=[fixedclipping_mod])
    assert CONFIGS and all(c["dp.clip-norm"] == 0.5 for c in CONFIGS)
    native = native_model(
        dp_fixed_clip(0.5, 0.8, clipped_on="nodes", seed=SEED), mods=[fixed_clipping_mod]
    )
    np.testing.assert_allclose(models[-1], native, rtol=1e-6)


def test_a_round_that_samples_no_client_takes_the_noise_step_as_natively():
    models: list = []
    inner = flower_fedavg(models, fraction=0.1, min_fit_clients=0)
    history = fl.simulation.start_simulation(
        client_fn=client_fn,
        num_clients=NODES,
        config=fl.server.ServerConfig(num_rounds=ROUNDS),
        strategy=DifferentialPrivacyServerSideFixedClipping(inner, 1.0, 0.5, 1, seed=2),
    )
    native = native_model(dp_fixed_clip(0.5, 1.0, seed=2), fraction=0.1, minimum=0)
    assert SENT == [2, 0, 1]  # seed 2 draws an empty round 2
    np.testing.assert_allclose(models[-1], native, rtol=1e-6)
    assert len(history.metrics_distributed_fit["privacy.epsilon"]) == ROUNDS


def test_client_side_clipping_sets_aside_a_client_that_did_not_clip():
    failures: list = []

    class Spy(FedAvg):
        def aggregate_fit(self, server_round, results, round_failures):
            failures.extend(round_failures)
            return super().aggregate_fit(server_round, results, round_failures)

    inner = Spy(
        fraction_fit=FRACTION,
        fraction_evaluate=0.0,
        initial_parameters=ndarrays_to_parameters([np.zeros(4, np.float32)]),
    )
    classic_run(DifferentialPrivacyClientSideFixedClipping(inner, 0.8, 0.5, 4, seed=SEED))
    assert failures and all("fixed_clipping_mod" in f.reason for f in failures)


def test_server_side_adaptive_clipping_maps_flowers_names():
    models: list = []
    strategy = DifferentialPrivacyServerSideAdaptiveClipping(
        flower_fedavg(models), noise_multiplier=1.0, num_sampled_clients=4,
        initial_clipping_norm=0.2, target_clipped_quantile=0.6, clip_norm_lr=0.3,
        clipped_count_stddev=1.0, seed=SEED,
    )  # fmt: skip
    classic_run(strategy)
    native = dp_adaptive_clip(
        1.0, initial_clip_norm=0.2, target_quantile=0.6, clip_learning_rate=0.3,
        count_noise_std=1.0, seed=SEED,
    )  # fmt: skip
    np.testing.assert_allclose(models[-1], native_model(native), rtol=1e-6)


def test_a_server_optimizer_of_the_wrapped_strategy_follows_the_dp_piece():
    models: list = []
    inner = fl.server.strategy.FedAvgM(
        fraction_fit=FRACTION, fraction_evaluate=0.0, server_momentum=0.5,
        initial_parameters=ndarrays_to_parameters([np.zeros(4, np.float32)]),
        evaluate_fn=lambda r, p, c: models.append(p[0].copy()),
    )  # fmt: skip
    classic_run(DifferentialPrivacyServerSideFixedClipping(inner, 1.0, 0.5, 4, seed=SEED))
    native = native_model(
        dp_fixed_clip(0.5, 1.0, seed=SEED), optimizer=server_momentum(server_momentum=0.5)
    )
    np.testing.assert_allclose(models[-1], native, rtol=1e-6)


def test_local_dp_mod_is_pollinates_local_dp_mod(caplog):
    models: list = []
    with caplog.at_level(logging.WARNING, logger="pollinate.flwr"):
        mod = LocalDpMod(clipping_norm=0.5, sensitivity=0.5, epsilon=4.0, delta=1e-5, seed=SEED)
    assert "sensitivity=0.5 is not used" in caplog.text
    with_round = flower_fedavg(models, fraction=1.0, on_fit_config_fn=lambda r: {ROUND: r})
    classic_run(with_round, mods=[mod])
    native = native_model(fraction=1.0, mods=[local_dp_mod(0.5, 4.0, 1e-5, seed=SEED)])
    np.testing.assert_allclose(models[-1], native, rtol=1e-5)
    assert not np.allclose(native, native_model(fraction=1.0))


def test_the_mod_modules_are_attributes_of_their_packages_as_in_flower():
    assert fl.client.mod.fixedclipping_mod is fixedclipping_mod
    assert flwr_clientapp.mod.LocalDpMod is LocalDpMod


def test_a_client_app_with_the_mods_can_go_to_worker_processes():
    mod = LocalDpMod(clipping_norm=0.5, sensitivity=1.0, epsilon=4.0, delta=1e-5, seed=SEED)
    app = fl.client.ClientApp(client_fn=client_fn, mods=[mod, fixedclipping_mod])
    again = pickle.loads(pickle.dumps(app))
    copied = again._mods[0].mod
    assert (copied.clipping_norm, copied.epsilon, copied.delta, copied.seed) == (0.5, 4.0, 1e-5, 7)


def test_a_seeded_local_dp_mod_refuses_a_config_without_the_round():
    mod = LocalDpMod(clipping_norm=0.5, sensitivity=1.0, epsilon=4.0, delta=1e-5, seed=SEED)
    content = flwr_app.RecordDict(
        {"arrays": flwr_app.ArrayRecord(), "config": flwr_app.ConfigRecord()}
    )
    message = flwr_app.Message(content, 1, "train")
    with pytest.raises(ConfigError, match="on_fit_config_fn"):
        mod(message, None, lambda m, c: m)


def test_flower_code_without_pollinate_s_seed_runs_and_warns_of_a_sample_size_mismatch(caplog):
    models: list = []
    strategy = DifferentialPrivacyServerSideFixedClipping(flower_fedavg(models), 1.0, 0.5, 3)
    with caplog.at_level(logging.WARNING, logger="pollinate.flwr"):
        classic_run(strategy)
    assert len(models) == ROUNDS + 1 and np.all(np.isfinite(models[-1]))
    assert "num_sampled_clients=3 but pollinate samples each of the 8 nodes" in caplog.text


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: DifferentialPrivacyServerSideFixedClipping(FedMedian(), 1.0, 0.5, 4),
            "FedAvg-style",
        ),
        (lambda: DifferentialPrivacyServerSideFixedClipping(FedAvg(), 0.0, 0.5, 4), "no noise"),
        (lambda: DifferentialPrivacyServerSideFixedClipping(FedAvg(), 1.0, -1.0, 4), "clip_norm"),
        (lambda: DifferentialPrivacyServerSideFixedClipping(FedAvg(), 1.0, 0.5, 0), "num_sampled"),
        (lambda: DifferentialPrivacyServerSideFixedClipping(FedAvg(), 1.0, 0.5, 4, eps=1), "eps"),
        (lambda: LocalDpMod(0.5, -1.0, 4.0, 1e-5), "sensitivity"),
        (lambda: LocalDpMod(0.5, 1.0, 0.0, 1e-5), "LocalDpMod: .*epsilon"),
    ],
)
def test_a_bad_setting_is_one_clear_error(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_client_side_adaptive_clipping_is_refused_with_what_to_use():
    with pytest.raises(ConfigError, match="use DifferentialPrivacyServerSideAdaptiveClipping"):
        from pollinate.compat.flwr.server.strategy import (  # noqa: F401
            DifferentialPrivacyClientSideAdaptiveClipping,
        )
    for module in ("client", "clientapp"):
        with pytest.raises(UnsupportedName, match="fixedclipping_mod"):
            exec(f"from pollinate.compat.flwr.{module}.mod import adaptiveclipping_mod")
    with pytest.raises(UnsupportedName, match=r"mods mapped are LocalDpMod, .*secaggplus_mod"):
        from pollinate.compat.flwr.client.mod import message_size_mod  # noqa: F401


# The message API (flwr.serverapp.strategy, flwr.clientapp.mod).


def message_api_run(wrap, mods=(), fraction=FRACTION, minimum=2) -> flwr_serverapp.strategy.Result:
    """A Flower message-API app: ``wrap(FedAvg(...))`` started in ``@app.main()``."""
    client = flwr_clientapp.ClientApp(mods=list(mods))

    @client.train()
    def train(msg, context):
        arrays = msg.content["arrays"].to_numpy_ndarrays()
        new = flwr_app.ArrayRecord([pull(a, context.node_id) for a in arrays])
        metrics = flwr_app.MetricRecord({"num-examples": 10 * context.node_id})
        content = flwr_app.RecordDict({"arrays": new, "metrics": metrics})
        return flwr_app.Message(content=content, reply_to=msg)

    server = flwr_serverapp.ServerApp()
    results = []

    @server.main()
    def main(grid, context):
        inner = flwr_strategy.FedAvg(
            fraction_train=fraction, fraction_evaluate=0.0, min_train_nodes=minimum
        )
        strategy = wrap(inner)
        start = flwr_app.ArrayRecord([np.zeros(4, np.float32)])
        results.append(strategy.start(grid=grid, initial_arrays=start, num_rounds=ROUNDS))

    fl.simulation.run_simulation(server_app=server, client_app=client, num_supernodes=NODES)
    return results[0]


def test_message_api_server_side_fixed_clipping_is_the_native_chain():
    result = message_api_run(
        lambda s: flwr_strategy.DifferentialPrivacyServerSideFixedClipping(
            s, noise_multiplier=1.0, clipping_norm=0.5, num_sampled_clients=4, seed=SEED
        )
    )
    (model,) = result.arrays.to_numpy_ndarrays()
    np.testing.assert_allclose(model, native_model(dp_fixed_clip(0.5, 1.0, seed=SEED)), rtol=1e-6)
    spent = result.train_metrics_clientapp[ROUNDS]["privacy.epsilon"]
    assert spent == epsilon([(FRACTION, 1.0)] * ROUNDS, 1e-5)


def test_message_api_client_side_fixed_clipping_with_the_mod_is_the_native_chain():
    from pollinate.compat.flwr.clientapp.mod import fixedclipping_mod as message_api_mod

    result = message_api_run(
        lambda s: flwr_strategy.DifferentialPrivacyClientSideFixedClipping(
            s, 0.8, 0.5, 4, seed=SEED
        ),
        mods=[message_api_mod],
    )
    (model,) = result.arrays.to_numpy_ndarrays()
    native = native_model(
        dp_fixed_clip(0.5, 0.8, clipped_on="nodes", seed=SEED), mods=[fixed_clipping_mod]
    )
    np.testing.assert_allclose(model, native, rtol=1e-6)


def test_message_api_server_side_adaptive_clipping_is_the_native_chain():
    result = message_api_run(
        lambda s: flwr_strategy.DifferentialPrivacyServerSideAdaptiveClipping(
            s, 1.0, 4, clipped_count_stddev=1.0, seed=SEED
        )
    )
    (model,) = result.arrays.to_numpy_ndarrays()
    native = native_model(dp_adaptive_clip(1.0, count_noise_std=1.0, seed=SEED))
    np.testing.assert_allclose(model, native, rtol=1e-6)


def test_message_api_round_that_samples_no_node_takes_the_noise_step_as_natively():
    result = message_api_run(
        lambda s: flwr_strategy.DifferentialPrivacyServerSideFixedClipping(s, 1.0, 0.5, 1, seed=2),
        fraction=0.1,
        minimum=0,
    )
    (model,) = result.arrays.to_numpy_ndarrays()
    native = native_model(dp_fixed_clip(0.5, 1.0, seed=2), fraction=0.1, minimum=0)
    assert SENT == [2, 0, 1]
    np.testing.assert_allclose(model, native, rtol=1e-6)
    assert sorted(result.train_metrics_clientapp) == [1, 2, 3]


def test_message_api_refusals_name_what_to_use():
    with pytest.raises(ConfigError, match="FedAvg-style"):
        flwr_strategy.DifferentialPrivacyServerSideFixedClipping(
            flwr_strategy.FedMedian(), 1.0, 0.5, 4
        )
    with pytest.raises(ConfigError, match="FedAvg-style"):  # the classic API's FedAvg
        flwr_strategy.DifferentialPrivacyServerSideFixedClipping(FedAvg(), 1.0, 0.5, 4)
    with pytest.raises(UnsupportedName, match="DifferentialPrivacyServerSideAdaptiveClipping"):
        from pollinate.compat.flwr.serverapp.strategy import (  # noqa: F401
            DifferentialPrivacyClientSideAdaptiveClipping,
        )


def test_local_dp_mod_s_node_epsilon_reaches_the_round_metrics_without_a_metrics_fn():
    """The nodes' privacy.* metrics are kept for the summary's privacy line (classic API)."""
    strategy = flower_fedavg([], fraction=1.0)
    status = fl.common.Status(fl.common.Code.OK, "")
    params = ndarrays_to_parameters([np.ones(4, np.float32)])
    reply = {"privacy.node-epsilon": 4.0, "privacy.node-delta": 1e-5, "loss": 0.3}
    results = [
        (SimpleNamespace(node_id=n), fl.common.FitRes(status, params, n, dict(reply)))
        for n in (10, 30)
    ]
    _, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics == {"privacy.node-epsilon": 4.0, "privacy.node-delta": 1e-5}
