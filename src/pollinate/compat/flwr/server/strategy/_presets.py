"""Flower's other built-in strategies, each on the pollinate strategy of the same algorithm.

Each takes FedAvg's Flower arguments plus its own, by Flower's names and defaults, and
builds its ``core`` from them: ``FedAdam(eta=...)`` -> ``pollinate.strategy.FedAdam``,
``Krum(num_malicious_clients=f, num_clients_to_keep=m)`` -> ``Krum`` / ``MultiKrum``,
``QFedAvg(q_param=...)`` -> ``QFedAvg(q=...)``, and so on. ``eta_l`` (the clients' learning
rate, which Flower's server only stores) is kept as an attribute and not used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

from .....errors import ConfigError
from .....strategy import Bulyan as CoreBulyan
from .....strategy import FedAdagrad as CoreFedAdagrad
from .....strategy import FedAdam as CoreFedAdam
from .....strategy import FedAvg as CoreFedAvg
from .....strategy import FedAvgM as CoreFedAvgM
from .....strategy import FedMedian as CoreFedMedian
from .....strategy import FedProx as CoreFedProx
from .....strategy import FedTrimmedAvg as CoreFedTrimmedAvg
from .....strategy import FedYogi as CoreFedYogi
from .....strategy import Krum as CoreKrum
from .....strategy import MultiKrum as CoreMultiKrum
from .....strategy import QFedAvg as CoreQFedAvg
from ...common.typing import FitIns, MetricsAggregationFn, Parameters, Scalar
from ..client_manager import ClientManager
from ..client_proxy import ClientProxy
from .fedavg import EvaluateFn, FedAvg

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "Bulyan",
    "FedAdagrad",
    "FedAdam",
    "FedAvgM",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "Krum",
    "QFedAvg",
]


class FedOptArgs(TypedDict, total=False):
    """FedAvg's Flower keyword arguments but ``initial_parameters`` (which FedOpt requires)."""

    fraction_fit: float
    fraction_evaluate: float
    min_fit_clients: int
    min_evaluate_clients: int
    min_available_clients: int
    evaluate_fn: EvaluateFn | None
    on_fit_config_fn: Callable[[int], dict[str, Scalar]] | None
    on_evaluate_config_fn: Callable[[int], dict[str, Scalar]] | None
    accept_failures: bool
    fit_metrics_aggregation_fn: MetricsAggregationFn | None
    evaluate_metrics_aggregation_fn: MetricsAggregationFn | None
    inplace: bool


class FedAvgArgs(FedOptArgs, total=False):
    """FedAvg's Flower keyword arguments, which every strategy here also takes."""

    initial_parameters: Parameters | None


class FedProx(FedAvg):
    """FedAvg that sends ``proximal_mu`` in each fit config (pollinate's ``FedProx``)."""

    def __init__(self, *, proximal_mu: float, **args: Unpack[FedAvgArgs]) -> None:
        self.proximal_mu = proximal_mu
        super().__init__(**args)

    def make_core(self, **options: Any) -> CoreFedAvg:
        return CoreFedProx(self.proximal_mu, **options)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """FedAvg's pairs, each config carrying ``proximal_mu`` (Flower's key)."""
        pairs = super().configure_fit(server_round, parameters, client_manager)
        return [
            (proxy, FitIns(ins.parameters, {**ins.config, "proximal_mu": self.proximal_mu}))
            for proxy, ins in pairs
        ]


class _ServerOptimizer(FedAvg):
    """A FedOpt strategy: Flower requires its ``initial_parameters``."""

    def __init__(
        self, *, initial_parameters: Parameters, eta: float, eta_l: float, tau: float, **args: Any
    ) -> None:
        if not isinstance(initial_parameters, Parameters):
            raise ConfigError(
                f"{type(self).__name__} needs initial_parameters=ndarrays_to_parameters(weights), "
                "as in Flower"
            )
        self.eta, self.eta_l, self.tau = eta, eta_l, tau
        super().__init__(initial_parameters=initial_parameters, **args)


class FedAdagrad(_ServerOptimizer):
    """FedAvg with a server Adagrad step (pollinate's ``FedAdagrad``)."""

    def __init__(
        self,
        *,
        initial_parameters: Parameters,
        eta: float = 1e-1,
        eta_l: float = 1e-1,
        tau: float = 1e-9,
        **args: Unpack[FedOptArgs],
    ) -> None:
        super().__init__(
            initial_parameters=initial_parameters, eta=eta, eta_l=eta_l, tau=tau, **args
        )

    def make_core(self, **options: Any) -> CoreFedAvg:
        return CoreFedAdagrad(eta=self.eta, tau=self.tau, **options)


class FedAdam(_ServerOptimizer):
    """FedAvg with a server Adam step (pollinate's ``FedAdam``)."""

    def __init__(
        self,
        *,
        initial_parameters: Parameters,
        eta: float = 1e-1,
        eta_l: float = 1e-1,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-9,
        **args: Unpack[FedOptArgs],
    ) -> None:
        self.beta_1, self.beta_2 = beta_1, beta_2
        super().__init__(
            initial_parameters=initial_parameters, eta=eta, eta_l=eta_l, tau=tau, **args
        )

    def make_core(self, **options: Any) -> CoreFedAvg:
        return CoreFedAdam(
            eta=self.eta, beta_1=self.beta_1, beta_2=self.beta_2, tau=self.tau, **options
        )


class FedYogi(_ServerOptimizer):
    """FedAvg with a server Yogi step (pollinate's ``FedYogi``)."""

    def __init__(
        self,
        *,
        initial_parameters: Parameters,
        eta: float = 1e-2,
        eta_l: float = 0.0316,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
        **args: Unpack[FedOptArgs],
    ) -> None:
        self.beta_1, self.beta_2 = beta_1, beta_2
        super().__init__(
            initial_parameters=initial_parameters, eta=eta, eta_l=eta_l, tau=tau, **args
        )

    def make_core(self, **options: Any) -> CoreFedAvg:
        return CoreFedYogi(
            eta=self.eta, beta_1=self.beta_1, beta_2=self.beta_2, tau=self.tau, **options
        )


class FedAvgM(FedAvg):
    """FedAvg with server momentum (pollinate's ``FedAvgM``; Flower's default momentum 0)."""

    def __init__(
        self,
        *,
        server_learning_rate: float = 1.0,
        server_momentum: float = 0.0,
        **args: Unpack[FedAvgArgs],
    ) -> None:
        self.server_learning_rate, self.server_momentum = server_learning_rate, server_momentum
        super().__init__(**args)

    def make_core(self, **options: Any) -> CoreFedAvg:
        return CoreFedAvgM(
            server_learning_rate=self.server_learning_rate,
            server_momentum=self.server_momentum,
            **options,
        )


class FedMedian(FedAvg):
    """The coordinate-wise median of the models (pollinate's ``FedMedian``)."""

    def make_core(self, **options: Any) -> CoreFedAvg:
        return CoreFedMedian(**options)


class FedTrimmedAvg(FedAvg):
    """The coordinate-wise trimmed mean (pollinate's ``FedTrimmedAvg``)."""

    def __init__(self, *, beta: float = 0.2, **args: Unpack[FedAvgArgs]) -> None:
        self.beta = beta
        super().__init__(**args)

    def make_core(self, **options: Any) -> CoreFedAvg:
        return CoreFedTrimmedAvg(beta=self.beta, **options)


class Krum(FedAvg):
    """Krum, or Multi-Krum with ``num_clients_to_keep`` > 0 (pollinate's ``Krum``/``MultiKrum``)."""

    def __init__(
        self,
        *,
        num_malicious_clients: int = 0,
        num_clients_to_keep: int = 0,
        **args: Unpack[FedAvgArgs],
    ) -> None:
        self.num_malicious_clients = num_malicious_clients
        self.num_clients_to_keep = num_clients_to_keep
        super().__init__(**args)

    def make_core(self, **options: Any) -> CoreFedAvg:
        if self.num_clients_to_keep > 0:
            return CoreMultiKrum(
                num_malicious_nodes=self.num_malicious_clients,
                num_nodes_to_keep=self.num_clients_to_keep,
                **options,
            )
        return CoreKrum(num_malicious_nodes=self.num_malicious_clients, **options)


class Bulyan(FedAvg):
    """Bulyan over Krum (pollinate's ``Bulyan``); only Flower's default first rule is supported."""

    def __init__(
        self,
        *,
        num_malicious_clients: int = 0,
        first_aggregation_rule: Callable[..., Any] | None = None,
        **args: Any,
    ) -> None:
        rule_kwargs = {k: args.pop(k) for k in list(args) if k not in FedAvgArgs.__optional_keys__}
        if first_aggregation_rule is not None or rule_kwargs:
            raise ConfigError(
                "Bulyan's first_aggregation_rule and its keyword arguments are not supported: "
                "pollinate's Bulyan always selects with Krum (Flower's default); for another "
                "rule compose pollinate.strategy.FedAvg(aggregation=chain(...))"
            )
        self.num_malicious_clients = num_malicious_clients
        super().__init__(**args)

    def make_core(self, **options: Any) -> CoreFedAvg:
        return CoreBulyan(num_malicious_nodes=self.num_malicious_clients, **options)


class QFedAvg(FedAvg):
    """q-FFL (pollinate's ``QFedAvg``): each client reports its loss as the fit metric ``loss``."""

    def __init__(
        self,
        *,
        q_param: float = 0.2,
        qffl_learning_rate: float = 0.1,
        **args: Unpack[FedAvgArgs],
    ) -> None:
        self.q_param, self.qffl_learning_rate = q_param, qffl_learning_rate
        super().__init__(**args)

    def make_core(self, **options: Any) -> CoreFedAvg:
        return CoreQFedAvg(
            q=self.q_param, qffl_learning_rate=self.qffl_learning_rate, loss_key="loss", **options
        )
