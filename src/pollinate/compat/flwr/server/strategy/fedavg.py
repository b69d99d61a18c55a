"""Flower's ``FedAvg`` with Flower's parameter names, on pollinate's ``FedAvg``.

Each Flower strategy here holds a pollinate strategy (``core``) made from its arguments:
``fraction_fit`` -> ``fraction_train``, ``min_fit_clients`` -> ``min_train_nodes``,
``min_evaluate_clients`` -> ``min_evaluate_nodes``, ``min_available_clients`` ->
``min_available_nodes``. The core samples the nodes (seeded: the same nodes every run) and
its aggregation chain folds the models (``aggregate_fit``); the loss is the
example-weighted mean (pollinate's ``weighted_mean``), as Flower's ``weighted_loss_avg``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

from .....message import Message
from .....privacy import SECAGG_COUNT_KEY
from .....records import ArrayRecord, MetricRecord
from .....strategy import FedAvg as CoreFedAvg
from .....strategy import Update, weighted_mean
from ...common.logger import logger as log
from ...common.logger import warn_once
from ...common.parameter import parameters_to_ndarrays
from ...common.typing import (
    EvaluateIns,
    FitIns,
    MetricsAggregationFn,
    NDArrays,
    Parameters,
    Scalar,
)
from ..client_manager import WAIT_S, ClientManager
from ..client_proxy import ClientProxy
from .strategy import (
    LOSS,
    NUM_EXAMPLES,
    EvaluateResults,
    Failures,
    FitResults,
    Strategy,
    numeric_metrics,
    parameters_view,
    record_of,
)

__all__ = ["EvaluateFn", "FedAvg"]

EvaluateFn = Callable[[int, NDArrays, dict[str, Scalar]], "tuple[float, dict[str, Scalar]] | None"]
"""Flower's centralized evaluation: ``(server_round, parameters, config) -> (loss, metrics)``."""

TRAIN, EVALUATE = 0, 1
"""The phases pollinate's ``FedAvg.sample_nodes`` seeds its sample with."""


class FedAvg(Strategy):
    """Federated averaging, with Flower's arguments and defaults.

    ``inplace`` is accepted and has no effect: pollinate always folds the models as they
    arrive, in O(model) memory.
    """

    def __init__(
        self,
        *,
        fraction_fit: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_fit_clients: int = 2,
        min_evaluate_clients: int = 2,
        min_available_clients: int = 2,
        evaluate_fn: EvaluateFn | None = None,
        on_fit_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        on_evaluate_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        accept_failures: bool = True,
        initial_parameters: Parameters | None = None,
        fit_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        evaluate_metrics_aggregation_fn: MetricsAggregationFn | None = None,
        inplace: bool = True,
    ) -> None:
        self.fraction_fit = fraction_fit
        self.fraction_evaluate = fraction_evaluate
        self.min_fit_clients = min_fit_clients
        self.min_evaluate_clients = min_evaluate_clients
        self.min_available_clients = min_available_clients
        self.evaluate_fn = evaluate_fn  # type: ignore[assignment]  # Flower's, not pollinate's
        self.on_fit_config_fn = on_fit_config_fn
        self.on_evaluate_config_fn = on_evaluate_config_fn
        self.accept_failures = accept_failures
        self.initial_parameters = initial_parameters
        self.fit_metrics_aggregation_fn = fit_metrics_aggregation_fn
        self.evaluate_metrics_aggregation_fn = evaluate_metrics_aggregation_fn
        self.inplace = inplace
        self.core = self.make_core(
            fraction_train=fraction_fit,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_fit_clients,
            min_evaluate_nodes=min_evaluate_clients,
            min_available_nodes=min_available_clients,
            wait_for_nodes_s=WAIT_S,
        )

    def make_core(self, **options: Any) -> CoreFedAvg:
        """The pollinate strategy that samples and aggregates (each subclass picks its own)."""
        return CoreFedAvg(**options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(accept_failures={self.accept_failures})"

    def num_fit_clients(self, num_available_clients: int) -> tuple[int, int]:
        """Flower's sample size and minimum for training, given the clients available."""
        count = int(num_available_clients * self.fraction_fit)
        return max(count, self.min_fit_clients), self.min_available_clients

    def num_evaluation_clients(self, num_available_clients: int) -> tuple[int, int]:
        """Flower's sample size and minimum for evaluation, given the clients available."""
        count = int(num_available_clients * self.fraction_evaluate)
        return max(count, self.min_evaluate_clients), self.min_available_clients

    def init_state(self, arrays: ArrayRecord) -> ArrayRecord:
        """The core's state before the first round (its server optimizers' moments)."""
        return self.core.init_state(arrays)

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """``initial_parameters``, handed over once (None: a node is asked for its own)."""
        initial, self.initial_parameters = self.initial_parameters, None
        return initial

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        """``evaluate_fn(server_round, ndarrays, {})``, or None without one."""
        evaluate_fn = cast("EvaluateFn | None", self.evaluate_fn)
        if evaluate_fn is None:
            return None
        return evaluate_fn(server_round, parameters_to_ndarrays(parameters), {})

    def evaluates_centrally(self) -> bool:
        """With an ``evaluate_fn``, or an ``evaluate`` of a subclass's own."""
        return self.evaluate_fn is not None or type(self).evaluate is not FedAvg.evaluate

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """The model and ``on_fit_config_fn(server_round)`` to a seeded sample of clients."""
        config = self.on_fit_config_fn(server_round) if self.on_fit_config_fn else {}
        if self.core.aggregation.poisson_sampling:  # a DP wrapper's core
            chosen, config = self._private_sample(server_round, config, client_manager)
        else:
            size, minimum = self.num_fit_clients(client_manager.num_available())
            chosen = client_manager.sample_seeded(
                size, minimum, self.core.seed, server_round, TRAIN
            )
        fit_ins = FitIns(parameters, config)
        return [(c, fit_ins) for c in chosen]

    def _private_sample(
        self, server_round: int, config: dict[str, Scalar], client_manager: ClientManager
    ) -> tuple[list[ClientProxy], dict[str, Scalar]]:
        """The core's Poisson sample, and the config with its DP entries (``dp.clip-norm``)."""
        nodes = self.core.sample_nodes(client_manager.grid, server_round, TRAIN)
        state = self._round.state if self._round is not None else ArrayRecord()
        extra = cast("dict[str, Scalar]", self.core.aggregation.node_config(state))
        return [client_manager.proxy(n) for n in nodes], {**config, **extra}

    def refuse_update(self, reply: Message, arrays: ArrayRecord) -> str | None:
        """The core's verdict: a DP core sets aside an update longer than the clients' clip."""
        content = reply.content
        return self.core.aggregation.check_update(
            content.arrays("arrays"), content.metrics("metrics"), arrays
        )

    def configure_evaluate(  # type: ignore[override]  # Flower's signature, not pollinate's
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        """The model and ``on_evaluate_config_fn(server_round)`` to a seeded sample."""
        if self.fraction_evaluate == 0.0:
            return []
        config = self.on_evaluate_config_fn(server_round) if self.on_evaluate_config_fn else {}
        ins = EvaluateIns(parameters, config)
        size, minimum = self.num_evaluation_clients(client_manager.num_available())
        chosen = client_manager.sample_seeded(size, minimum, self.core.seed, server_round, EVALUATE)
        return [(c, ins) for c in chosen]

    def aggregate_fit(
        self, server_round: int, results: FitResults, failures: Failures
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """The core's aggregation over the results (weighted by ``num_examples``)."""
        current = self._round  # None when called outside a run, e.g. in a unit test
        # A DP core takes a noise-only step when its Poisson sample drew no client.
        noise_only = self.core.aggregation.poisson_sampling and current is not None
        if (not results and not noise_only) or (failures and not self.accept_failures):
            return None, {}
        if current is not None and len(current.arrays):
            like, state = current.arrays, current.state
        else:
            like = record_of(results[0][1].parameters, None)
            state = self.core.init_state(like)
        info = self.core.round_info(server_round)  # a DP core's Poisson sample
        secure = current is not None and current.secure
        updates = _updates(results, like, secure)
        mean, state = self.core.aggregation.update(updates, like, state, info)
        if current is not None:
            current.state = state
        metrics: dict[str, Scalar] = {}
        if secure:
            metrics = self._secure_fit_metrics(results)
        elif self.fit_metrics_aggregation_fn is None:
            if server_round == 1:
                log.warning("No fit_metrics_aggregation_fn provided")
        elif results:
            metrics = self.fit_metrics_aggregation_fn(
                [(r.num_examples, r.metrics) for _, r in results]
            )
        if not secure:  # the nodes' own privacy (local DP, DP-SGD), for the run's summary
            metrics = {**_node_privacy(results), **metrics}
        pieces = self.core.aggregation.metrics(state)  # privacy.epsilon and the like
        if pieces:
            metrics = {**metrics, **cast("dict[str, Scalar]", pieces)}
        return (None if mean is None else parameters_view(mean)), metrics

    def _secure_fit_metrics(self, results: FitResults) -> dict[str, Scalar]:
        """A secure round's fit metrics: how many clients its sum holds (``secagg.count``).

        The clients' own fit metrics stay on the nodes (they would be individual), so
        ``fit_metrics_aggregation_fn`` has nothing to aggregate: it is not called.
        """
        if self.fit_metrics_aggregation_fn is not None:
            warn_once(
                "secure-fit-metrics",
                "fit_metrics_aggregation_fn is not called under SecAgg+: pollinate does not "
                "send the clients' fit metrics (each would be one client's, in the clear); "
                f"each round's fit metrics hold {SECAGG_COUNT_KEY!r}, the clients in the sum",
            )
        return {k: v for _, r in results for k, v in r.metrics.items() if k == SECAGG_COUNT_KEY}

    def aggregate_evaluate(  # type: ignore[override]  # Flower's signature, not pollinate's
        self, server_round: int, results: EvaluateResults, failures: Failures
    ) -> tuple[float | None, dict[str, Scalar]]:
        """The example-weighted mean loss, and ``evaluate_metrics_aggregation_fn``'s metrics."""
        if not results or (failures and not self.accept_failures):
            return None, {}
        losses = [
            MetricRecord({LOSS: float(r.loss), NUM_EXAMPLES: r.num_examples}) for _, r in results
        ]
        loss = weighted_mean(losses, NUM_EXAMPLES).get(LOSS)
        metrics: dict[str, Scalar] = {}
        if self.evaluate_metrics_aggregation_fn is not None:
            metrics = self.evaluate_metrics_aggregation_fn(
                [(r.num_examples, r.metrics) for _, r in results]
            )
        elif server_round == 1:
            log.warning("No evaluate_metrics_aggregation_fn provided")
        return (None if loss is None else float(loss)), metrics


def _updates(results: FitResults, like: ArrayRecord, secure: bool) -> Iterator[Update]:
    """Each result as an ``Update`` for the core's aggregation chain.

    Only a secure round's one result is a sum: a client's own ``secagg.count`` is dropped,
    or a DP core would take its update for the mean of that many clients.
    """
    for proxy, res in results:
        metrics = numeric_metrics(res.metrics)  # text metrics reach the aggregation fn only
        if not secure:
            metrics.pop(SECAGG_COUNT_KEY, None)
        metrics[NUM_EXAMPLES] = res.num_examples
        yield Update(
            proxy.node_id, record_of(res.parameters, like), float(res.num_examples), metrics
        )


_PRIVACY = "privacy."
"""The prefix of the privacy metrics a client reports of itself (``privacy.node-epsilon``)."""


def _node_privacy(results: FitResults) -> dict[str, Scalar]:
    """The example-weighted mean of each ``privacy.*`` metric every client reported.

    What pollinate's own FedAvg gives its summary (a local DP mod's ``privacy.node-epsilon``),
    kept even when no ``fit_metrics_aggregation_fn`` aggregates the clients' metrics.
    """
    total = sum(r.num_examples for _, r in results)
    if not results or total <= 0:
        return {}
    keys = set.intersection(*(set(r.metrics) for _, r in results))
    return {
        key: sum(float(r.metrics[key]) * r.num_examples for _, r in results) / total
        for key in sorted(keys)
        if key.startswith(_PRIVACY) and all(_is_number(r.metrics[key]) for _, r in results)
    }


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
