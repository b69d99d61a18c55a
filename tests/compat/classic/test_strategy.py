"""compat.flwr.server.strategy: Flower's strategies on pollinate's round loop and kernels."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

import pollinate
import pollinate.compat.flwr as fl
import pollinate.strategy as core
from pollinate.client import ClientApp
from pollinate.compat.flwr.client._adapter import FlowerClientFn
from pollinate.compat.flwr.common import (
    Code,
    EvaluateRes,
    FitIns,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from pollinate.compat.flwr.server.client_proxy import ClientProxy
from pollinate.compat.flwr.server.strategy import FedAvg
from pollinate.errors import ConfigError

from ._clients import SEEN, last_one_fails, shift_by_cid, simulate

OK = Status(Code.OK, "")
START = [np.zeros(3, np.float32), np.ones((2, 2), np.float64)]


def _start():
    return ndarrays_to_parameters(START)


def fit_res(value: float, num_examples: int, **metrics) -> tuple[ClientProxy, FitRes]:
    parameters = ndarrays_to_parameters([np.full(3, value, np.float32)])
    return ClientProxy(str(num_examples), num_examples), FitRes(
        OK, parameters, num_examples, metrics
    )


def eval_res(loss: float, num_examples: int, **metrics) -> tuple[ClientProxy, EvaluateRes]:
    return ClientProxy("1", 1), EvaluateRes(OK, loss, num_examples, metrics)


def test_flower_arguments_map_to_the_pollinate_strategy():
    strategy = FedAvg(
        fraction_fit=0.5, fraction_evaluate=0.2, min_fit_clients=3, min_evaluate_clients=4,
        min_available_clients=5,
    )  # fmt: skip
    assert isinstance(strategy, pollinate.Strategy) and isinstance(strategy.core, core.FedAvg)
    assert (strategy.core.fraction_train, strategy.core.fraction_evaluate) == (0.5, 0.2)
    assert strategy.core.min_train_nodes == 3 and strategy.core.min_evaluate_nodes == 4
    assert strategy.core.min_available_nodes == 5
    assert strategy.num_fit_clients(10) == (5, 5) and strategy.num_evaluation_clients(10) == (4, 5)


def test_aggregate_fit_is_the_example_weighted_mean():
    results = [fit_res(1.0, 10), fit_res(4.0, 30)]
    parameters, metrics = FedAvg().aggregate_fit(1, results, [])
    assert np.allclose(parameters_to_ndarrays(parameters)[0], (1 * 10 + 4 * 30) / 40)
    assert metrics == {}


def test_aggregate_evaluate_gives_flowers_weighted_loss_and_the_metrics_fn():
    results = [eval_res(0.5, 10, accuracy=0.9), eval_res(2.0, 30, accuracy=0.1)]
    loss, metrics = FedAvg().aggregate_evaluate(1, results, [])
    assert loss == pytest.approx((0.5 * 10 + 2.0 * 30) / 40) and metrics == {}
    mean = FedAvg(evaluate_metrics_aggregation_fn=lambda m: {"n": sum(n for n, _ in m)})
    assert mean.aggregate_evaluate(1, results, [])[1] == {"n": 40}


def test_without_metrics_fn_distributed_metrics_stay_empty_with_one_warning(caplog):
    with caplog.at_level("WARNING", logger="pollinate.flwr"):
        history = simulate(shift_by_cid, FedAvg(), num_rounds=3)
    assert history.metrics_distributed == {} and history.metrics_distributed_fit == {}
    weights = [10, 20, 30]  # clients 0, 1, 2 evaluate with loss = cid
    expected = sum(w * cid for cid, w in enumerate(weights)) / sum(weights)
    assert history.losses_distributed == [(r, pytest.approx(expected)) for r in (1, 2, 3)]
    said = [r.getMessage() for r in caplog.records]
    assert said.count("No evaluate_metrics_aggregation_fn provided") == 1


def test_fit_metrics_fn_fills_metrics_distributed_fit():
    fn = lambda m: {"fit_x": max(x["fit_x"] for _, x in m)}  # noqa: E731
    history = simulate(shift_by_cid, FedAvg(fit_metrics_aggregation_fn=fn), num_rounds=2)
    assert history.metrics_distributed_fit == {"fit_x": [(1, 2.0), (2, 2.0)]}


def test_evaluate_fn_fills_centralized_history_from_round_0():
    calls = []

    def evaluate_fn(server_round, parameters, config):
        calls.append((server_round, parameters[0].copy(), config, parameters[0].flags.writeable))
        return float(server_round), {"mean": float(parameters[0].mean())}

    strategy = FedAvg(evaluate_fn=evaluate_fn, initial_parameters=ndarrays_to_parameters(START))
    history = simulate(shift_by_cid, strategy, num_rounds=2)
    assert history.losses_centralized == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert [r for r, _ in history.metrics_centralized["mean"]] == [0, 1, 2]
    assert all(config == {} and writable for _, _, config, writable in calls)
    assert np.array_equal(calls[0][1], START[0])


def test_accept_failures_false_keeps_the_model_in_a_round_with_failures():
    def seen_model(strategy):
        models = []
        strategy.evaluate_fn = lambda r, p, c: models.append(p[0].copy()) or None
        simulate(last_one_fails, strategy, num_rounds=1)
        return models

    refusing = FedAvg(accept_failures=False, initial_parameters=ndarrays_to_parameters(START))
    before, after = seen_model(refusing)
    assert np.array_equal(before, after)
    accepting = FedAvg(initial_parameters=ndarrays_to_parameters(START))
    before, after = seen_model(accepting)
    assert np.allclose(after, before + (0 * 10 + 1 * 20) / 30)  # clients 0 and 1 only


class SavesAndCounts(FedAvg):
    """Seed 001's pattern: call super(), then read the results again."""

    seen: ClassVar[list[int]] = []

    def aggregate_fit(self, server_round, results, failures):
        parameters, metrics = super().aggregate_fit(server_round, results, failures)
        self.seen.append(sum(r.num_examples for _, r in results))
        return parameters, {"examples": self.seen[-1], **metrics}

    def aggregate_evaluate(self, server_round, results, failures):
        loss, _ = super().aggregate_evaluate(server_round, results, failures)
        accuracy = sum(r.metrics["accuracy"] * r.num_examples for _, r in results)
        return loss, {"accuracy": accuracy / sum(r.num_examples for _, r in results)}


def test_subclass_reads_results_after_super_and_its_metrics_reach_history():
    history = simulate(shift_by_cid, SavesAndCounts(), num_rounds=2)
    assert SavesAndCounts.seen == [60, 60]
    assert history.metrics_distributed_fit == {"examples": [(1, 60), (2, 60)]}
    assert history.metrics_distributed["accuracy"][0][1] == pytest.approx(
        (0.0 * 10 + 0.1 * 20 + 0.2 * 30) / 60
    )


class OneClientWithConfig(FedAvg):
    """Overrides configure_fit the Flower way: its own sample, its own config."""

    def configure_fit(self, server_round, parameters, client_manager):
        (client,) = client_manager.sample(num_clients=1, min_num_clients=3)
        return [(client, FitIns(parameters, {"lr": 0.1, "round": server_round}))]


def test_configure_fit_can_be_overridden():
    simulate(shift_by_cid, OneClientWithConfig(), num_rounds=2)
    assert SEEN["config"] == [{"lr": 0.1, "round": 1}, {"lr": 0.1, "round": 2}]


def test_on_fit_config_fn_reaches_the_clients():
    simulate(shift_by_cid, FedAvg(on_fit_config_fn=lambda r: {"epochs": r}), num_rounds=2)
    assert sorted(c["epochs"] for c in SEEN["config"]) == [1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize(
    ("make", "core_type"),
    [
        (lambda: fl.server.strategy.FedProx(proximal_mu=0.1), core.FedProx),
        (lambda: fl.server.strategy.FedAvgM(server_momentum=0.5), core.FedAvgM),
        (lambda: fl.server.strategy.FedMedian(), core.FedMedian),
        (lambda: fl.server.strategy.FedTrimmedAvg(beta=0.1), core.FedTrimmedAvg),
        (lambda: fl.server.strategy.Krum(num_clients_to_keep=0, min_fit_clients=3), core.Krum),
        (lambda: fl.server.strategy.Krum(num_clients_to_keep=2, min_fit_clients=3), core.MultiKrum),
        (lambda: fl.server.strategy.Bulyan(min_fit_clients=3), core.Bulyan),
        (lambda: fl.server.strategy.QFedAvg(q_param=0.5), core.QFedAvg),
        (lambda: fl.server.strategy.FedAdam(initial_parameters=_start()), core.FedAdam),
        (lambda: fl.server.strategy.FedYogi(initial_parameters=_start()), core.FedYogi),
        (lambda: fl.server.strategy.FedAdagrad(initial_parameters=_start()), core.FedAdagrad),
    ],
)  # fmt: skip
def test_each_flower_strategy_holds_the_pollinate_one(make, core_type):
    assert type(make().core) is core_type


def test_server_optimizers_keep_flowers_defaults_and_run():
    strategy = fl.server.strategy.FedAdam(initial_parameters=ndarrays_to_parameters(START))
    assert (strategy.eta, strategy.beta_1, strategy.beta_2) == (0.1, 0.9, 0.99)
    history = simulate(shift_by_cid, strategy, num_rounds=2)
    assert len(history.losses_distributed) == 2


def test_fedprox_sends_proximal_mu_under_flowers_key():
    simulate(shift_by_cid, fl.server.strategy.FedProx(proximal_mu=0.3), num_rounds=1)
    assert all(c["proximal_mu"] == 0.3 for c in SEEN["config"])


@pytest.mark.parametrize(
    "name",
    [
        "DPFedAvgFixed",
        "DifferentialPrivacyClientSideAdaptiveClipping",
        "FaultTolerantFedAvg",
        "FedXgbCyclic",
        "FedOpt",
    ],
)
def test_flower_strategies_without_counterpart_name_the_alternative(name):
    with pytest.raises(
        ConfigError, match=r"not supported on pollinate: (use|pollinate (has|does) no)"
    ):
        getattr(fl.server.strategy, name)


def test_bulyan_with_another_first_rule_is_refused():
    with pytest.raises(ConfigError, match="first_aggregation_rule"):
        fl.server.strategy.Bulyan(first_aggregation_rule=len, min_fit_clients=3)


def test_a_flower_strategy_takes_its_config_from_on_fit_config_fn():
    with pytest.raises(ConfigError, match="on_fit_config_fn"):
        FedAvg().start(None, train_config={"lr": 0.1})  # type: ignore[arg-type]


def test_as_server_app_runs_a_flower_strategy_on_run_simulation():
    app = ClientApp(client_fn=FlowerClientFn(shift_by_cid))
    result = pollinate.run_simulation(FedAvg().as_server_app(2), app, num_nodes=3)
    assert [r.server_round for r in result.rounds] == [1, 2]
    assert fl.server.history_from_result(result).losses_distributed[-1][0] == 2


class Halves(fl.server.strategy.Strategy):
    """A strategy written from Flower's abstract class: each round halves the model."""

    def initialize_parameters(self, client_manager):
        return ndarrays_to_parameters([np.full(3, 8.0, np.float32), np.ones((2, 2))])

    def configure_fit(self, server_round, parameters, client_manager):
        proxies = sorted(client_manager.all().values(), key=lambda p: p.node_id)
        return [(proxies[0], FitIns(parameters, {}))]

    def aggregate_fit(self, server_round, results, failures):
        (_, res), *_ = results
        first, second = parameters_to_ndarrays(res.parameters)
        return ndarrays_to_parameters([first / 2, second]), {"n": len(results)}

    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round, parameters):
        return float(parameters_to_ndarrays(parameters)[0][0]), {}


def test_a_strategy_from_flowers_abstract_class_runs():
    history = simulate(shift_by_cid, Halves(), num_rounds=2)
    # client "0" trains to the model + 0; the strategy halves it
    assert history.losses_centralized == [(0, 8.0), (1, 4.0), (2, 2.0)]
    assert history.metrics_distributed_fit == {"n": [(1, 1), (2, 1)]}
    assert history.losses_distributed == []
