"""Flower's message-API strategies on pollinate's round loop: FedAvg, presets, subclasses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest

import pollinate
from pollinate import strategy as core
from pollinate.compat.flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from pollinate.compat.flwr.clientapp import ClientApp
from pollinate.compat.flwr.serverapp import Grid, ServerApp
from pollinate.compat.flwr.serverapp import strategy as flwr_strategy
from pollinate.compat.flwr.serverapp.strategy import FedAvg, Result, Strategy
from pollinate.errors import ConfigError

from . import _numpy_app

# One round of the numpy app on 3 nodes: node i moves weights by +i, weighted by 10i.
STEP = (1 * 10 + 2 * 20 + 3 * 30) / 60


def run(
    strategy: Strategy,
    client_app: pollinate.ClientApp = _numpy_app.app,
    num_nodes: int = 3,
    **start: Any,
) -> tuple[Result, pollinate.Result]:
    """Run ``strategy.start`` in a Flower-style ServerApp; Flower's Result and pollinate's."""
    results: list[Result] = []
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        options = {"initial_arrays": _numpy_app.initial_arrays(), "num_rounds": 2, **start}
        results.append(strategy.start(grid=grid, **options))

    core_result = pollinate.run_simulation(app, client_app, num_nodes=num_nodes)
    return results[0], core_result


def test_fedavg_averages_by_weighted_by_key_and_fills_flowers_result():
    seen: list[tuple[int, type]] = []

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        seen.append((server_round, type(arrays)))
        return MetricRecord({"mean": float(arrays["0"].numpy().mean())})

    result, core_result = run(
        FedAvg(), evaluate_fn=evaluate_fn, train_config=ConfigRecord({"scale": 3.0})
    )
    np.testing.assert_allclose(result.arrays["0"].numpy(), np.full((2, 3), 2 * STEP))
    assert isinstance(result.arrays, ArrayRecord)
    assert result.arrays.to_numpy_ndarrays()[1].shape == (4,)
    assert sorted(result.train_metrics_clientapp) == [1, 2]
    assert result.train_metrics_clientapp[2]["calls"] == 2  # node state kept between rounds
    assert result.train_metrics_clientapp[1]["scale"] == 3.0
    assert isinstance(result.train_metrics_clientapp[1], MetricRecord)
    assert result.evaluate_metrics_clientapp[1]["loss"] == pytest.approx(STEP)
    assert sorted(result.evaluate_metrics_serverapp) == [0, 1, 2]
    assert seen == [(0, ArrayRecord), (1, ArrayRecord), (2, ArrayRecord)]
    assert result.core is core_result  # one loop: pollinate's, and its history


def test_fraction_evaluate_zero_skips_federated_evaluation_as_in_flower():
    strategy = FedAvg(fraction_evaluate=0.0)
    assert strategy.min_evaluate_nodes == 0
    result, _ = run(strategy)
    assert result.evaluate_metrics_clientapp == {}


def test_fraction_train_zero_keeps_the_model():
    result, _ = run(FedAvg(fraction_train=0.0))
    assert result.train_metrics_clientapp == {}
    np.testing.assert_array_equal(result.arrays["0"].numpy(), np.zeros((2, 3)))


def test_flowers_arguments_reach_pollinates_fedavg():
    strategy = FedAvg(0.5, 0.25, 3, 4, 5, weighted_by_key="n")
    settings = strategy.core
    assert isinstance(settings, core.FedAvg)
    assert (settings.fraction_train, settings.fraction_evaluate) == (0.5, 0.25)
    assert (settings.min_train_nodes, settings.min_evaluate_nodes) == (3, 4)
    assert settings.min_available_nodes == 5 and settings.weight_key == "n"
    assert repr(strategy).startswith("FedAvg(fraction_train=0.5")


def test_metrics_aggregation_functions_get_recorddicts():
    calls: list[tuple[list[Any], str]] = []

    def aggregate(records: list[RecordDict], weighting_key: str) -> MetricRecord:
        calls.append((records, weighting_key))
        total = sum(r["metrics"]["num-examples"] for r in records)
        return MetricRecord({"nodes": len(records), "total": total})

    result, _ = run(FedAvg(train_metrics_aggr_fn=aggregate, evaluate_metrics_aggr_fn=aggregate))
    assert dict(result.train_metrics_clientapp[1]) == {"nodes": 3, "total": 60}
    records, key = calls[0]
    assert key == "num-examples" and all(isinstance(r, RecordDict) for r in records)


keyed_app = ClientApp()


@keyed_app.train()
def _keyed_train(msg: Message, context: Context) -> Message:
    """Reads the model under "model" and replies under names of its own, as Flower allows."""
    arrays = msg.content["model"].to_numpy_ndarrays()
    lr = msg.content["settings"]["server-round"]
    content = RecordDict(
        {
            "weights": ArrayRecord([a + lr for a in arrays]),
            "stats": MetricRecord({"num-examples": 1}),
        }
    )
    return Message(content, reply_to=msg)


def test_record_keys_follow_arrayrecord_key_and_configrecord_key():
    strategy = FedAvg(fraction_evaluate=0.0, arrayrecord_key="model", configrecord_key="settings")
    result, _ = run(strategy, client_app=keyed_app)
    np.testing.assert_array_equal(result.arrays["0"].numpy(), np.full((2, 3), 1.0 + 2.0))


class CountingFedAvg(FedAvg):
    """The Flower way: call super(), then read the replies again."""

    def __init__(self) -> None:
        super().__init__(fraction_evaluate=0.0)
        self.counts: list[int] = []
        self.saved: list[ArrayRecord] = []

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        for message in messages:  # a per-node setting, written into the message sent
            message.content["config"]["scale"] = float(message.metadata.dst_node_id)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = super().aggregate_train(server_round, replies)
        examples = sum(r.content["metrics"]["num-examples"] for r in replies)
        self.counts.append(examples)
        assert arrays is not None
        self.saved.append(arrays)
        return arrays, metrics


def test_a_subclass_calls_super_and_iterates_the_replies_again():
    strategy = CountingFedAvg()
    assert not strategy.streams("aggregate_train")
    assert FedAvg().streams("aggregate_train")
    _, core_result = run(strategy)
    assert strategy.counts == [60, 60]
    np.testing.assert_allclose(strategy.saved[-1]["0"].numpy(), np.full((2, 3), 2 * STEP))
    assert core_result.rounds[-1].train.metrics["scale"] == pytest.approx((10 + 40 + 90) / 60)


class HalfStep(Strategy):
    """A strategy written from scratch on Flower's base class."""

    def configure_train(self, server_round, arrays, config, grid):
        return [
            Message(RecordDict({"arrays": arrays, "config": config}), node, "train")
            for node in grid.get_node_ids()
        ]

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        stacked = [r.content["arrays"].to_numpy_ndarrays() for r in replies]
        mean = [np.mean(arrays, axis=0) / 2 for arrays in zip(*stacked, strict=True)]
        return ArrayRecord(mean), MetricRecord({"replies": len(replies)})

    def configure_evaluate(self, server_round, arrays, config, grid):
        return []

    def aggregate_evaluate(self, server_round, replies):
        return None

    def summary(self) -> None:
        pass


def test_a_strategy_written_on_flowers_base_class_runs():
    result, _ = run(HalfStep())
    assert result.train_metrics_clientapp[1]["replies"] == 3
    np.testing.assert_allclose(result.arrays["1"].numpy(), np.full(4, ((0 + 2) / 2 + 2) / 2))


@pytest.mark.parametrize(
    ("flower", "kwargs", "native", "checks"),
    [
        ("FedProx", {"proximal_mu": 0.5}, core.FedProx, {"proximal_mu": 0.5}),
        ("FedAvgM", {"server_momentum": 0.9}, core.FedAvgM, {}),
        ("FedAdam", {}, core.FedAdam, {}),
        ("FedYogi", {"eta": 0.02}, core.FedYogi, {}),
        ("FedAdagrad", {}, core.FedAdagrad, {}),
        ("FedMedian", {}, core.FedMedian, {}),
        ("FedTrimmedAvg", {"beta": 0.1}, core.FedTrimmedAvg, {}),
        ("Krum", {"num_malicious_nodes": 0, "min_train_nodes": 3}, core.Krum, {}),
        ("MultiKrum", {"num_nodes_to_select": 2, "min_train_nodes": 3}, core.MultiKrum, {}),
        ("Bulyan", {"min_train_nodes": 3}, core.Bulyan, {}),
        ("QFedAvg", {"client_learning_rate": 0.1}, core.QFedAvg, {"q": 0.1}),
    ],
)
def test_each_flower_strategy_builds_pollinates_own(flower, kwargs, native, checks):
    strategy = getattr(flwr_strategy, flower)(**kwargs)
    assert type(strategy.core) is native
    for name, value in checks.items():
        assert getattr(strategy, name) == value
    assert repr(strategy).startswith(f"{flower}(")


def test_fedadam_keeps_its_server_state_between_rounds():
    result, _ = run(flwr_strategy.FedAdam(fraction_evaluate=0.0, eta=0.5), num_rounds=3)
    moved = result.arrays["0"].numpy()
    assert np.all(moved > 0) and not np.allclose(moved, 3 * STEP)
    assert result.core is not None and result.core.strategy_state  # moments, kept round to round


def test_flower_defaults_of_the_adaptive_strategies():
    adam = flwr_strategy.FedAdam()
    assert (adam.eta, adam.eta_l, adam.beta_1, adam.beta_2, adam.tau) == (0.1, 0.1, 0.9, 0.99, 1e-3)
    assert flwr_strategy.FedYogi().eta == 1e-2


def test_qfedavg_maps_flowers_names():
    strategy = flwr_strategy.QFedAvg(0.05, q=0.3, train_loss_key="loss")
    assert (strategy.core.qffl_learning_rate, strategy.core.q) == (0.05, 0.3)
    assert strategy.core.loss_key == "loss"


def test_bulyan_with_its_own_selection_rule_is_a_clear_error():
    with pytest.raises(ConfigError, match="selection_rule"):
        flwr_strategy.Bulyan(selection_rule=lambda *a: a)


def test_a_flower_strategy_pollinate_lacks_is_named_with_what_it_has():
    with pytest.raises(ImportError, match=r"pollinate has Bulyan, .*FedAvg"):
        from pollinate.compat.flwr.serverapp.strategy import FedXgbCyclic  # noqa: F401
    with pytest.raises(ConfigError, match="DifferentialPrivacyServerSideAdaptiveClipping"):
        _ = flwr_strategy.DifferentialPrivacyClientSideAdaptiveClipping
    assert not hasattr(flwr_strategy, "__wrapped__")  # tools' probes get AttributeError


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("pollinate.compat.flwr.app", "UserConfigError"),
        ("pollinate.compat.flwr.clientapp", "LifespanFn"),
        ("pollinate.compat.flwr.serverapp", "SuperGrid"),
    ],
)
def test_every_module_names_what_it_lacks(module, name):
    with pytest.raises(ImportError, match=rf"{module} has no '{name}'.*migrating-from-flower"):
        exec(f"from {module} import {name}")


def test_aggregate_train_outside_start_uses_the_replies_own_arrays():
    node = pollinate.Message.create(pollinate.RecordDict(), 1, "train")
    replies = [
        Message(
            RecordDict(
                {
                    "arrays": ArrayRecord([np.full(2, float(i))]),
                    "metrics": MetricRecord({"num-examples": 1}),
                }
            ),
            reply_to=node,
        )
        for i in (1, 3)
    ]
    arrays, metrics = FedAvg().aggregate_train(1, replies)
    assert arrays is not None and metrics is not None
    np.testing.assert_array_equal(arrays["0"].numpy(), [2.0, 2.0])
    assert FedAvg().aggregate_train(1, []) == (None, None)


def test_strategy_utils_aggregate_as_flowers_with_pollinates_kernels():
    from pollinate.compat.flwr.serverapp.strategy.strategy_utils import (
        aggregate_arrayrecords,
        aggregate_metricrecords,
        log_strategy_start_info,
    )

    records = [
        RecordDict(
            {
                "model": ArrayRecord([np.full(2, value)]),
                "stats": MetricRecord({"n": weight, "acc": value}),
            }
        )
        for value, weight in ((1.0, 1), (4.0, 2))
    ]
    mean = aggregate_arrayrecords(records, "n")
    assert isinstance(mean, ArrayRecord)
    np.testing.assert_array_equal(mean["0"].numpy(), [3.0, 3.0])
    assert dict(aggregate_metricrecords(records, "n")) == {"acc": 3.0}
    assert aggregate_arrayrecords([], "n") == ArrayRecord()
    log_strategy_start_info(3, mean, ConfigRecord({"lr": 0.1}), None)
    with pytest.raises(pollinate.errors.RecordError, match="exactly one ArrayRecord"):
        aggregate_arrayrecords([RecordDict()], "n")


def test_a_result_prints_as_a_short_summary_by_round():
    # Flower's advanced-pytorch logs str(result) line by line at the end of its run.
    result = Result(
        arrays=ArrayRecord([np.zeros((1000, 100), np.float32), np.zeros(3)]),
        train_metrics_clientapp={1: MetricRecord({"train_loss": 2.5, "num-examples": 160})},
        evaluate_metrics_serverapp={0: MetricRecord({"accuracy": 0.1}), 1: MetricRecord()},
    )
    text = str(result)
    assert text == repr(result)
    assert "Array(shape" not in text and len(text.splitlines()) < 12
    assert "2 arrays (0.400 MB)" in text
    assert "1: train_loss=2.5, num-examples=160" in text
    assert "0: accuracy=0.1" in text
    assert "evaluate metrics (ClientApp), by round: none" in text
