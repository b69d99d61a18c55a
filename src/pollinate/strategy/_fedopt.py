"""Server optimizers on the pseudo-gradient, and the strategies named after them.

The aggregate of a round is read as one step of the nodes: ``delta = aggregate - current``
(minus the pseudo-gradient). A server optimizer turns the deltas of the rounds into its own
step, and the next model is ``current + step``:

- ``server_momentum`` / :class:`FedAvgM`: heavy-ball momentum on the deltas (Hsu et al.
  2019, "Measuring the Effects of Non-Identical Data Distribution for Federated Visual
  Classification", https://arxiv.org/abs/1909.06335).
- ``server_adagrad``, ``server_adam``, ``server_yogi`` / :class:`FedAdagrad`,
  :class:`FedAdam`, :class:`FedYogi`: adaptive steps (Reddi et al. 2021, "Adaptive
  Federated Optimization", ICLR, https://arxiv.org/abs/2003.00295, Algorithm 2). As in the
  paper there is no bias correction, and the second moment starts at ``tau**2``.

Each delta, and the optimizer's state, is kept in float64, one array at a time; the new
model is cast back to the dtype of each of the current model's arrays. Only floating
arrays are optimized: integer, boolean and complex arrays (counters, masks) take the
aggregate as it is. The state is a value (``init(arrays)``, then ``update(current,
aggregate, state) -> (model, state)``), kept by array name for one model: if the arrays'
names or shapes differ from the state's, the step raises RoundError rather than silently
starting afresh.

The optimizers take the parameter names of their presets, which are Flower's: ``eta``,
``beta_1``, ``beta_2``, ``tau``; ``server_learning_rate`` and ``server_momentum``.
"""

from __future__ import annotations

import math
import numbers
from abc import abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, RoundError
from ..records import Array, ArrayRecord
from ._compose import ServerOptimizer, chain
from ._fedavg import FedAvg

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._fedavg import FedAvgOptions

__all__ = [
    "FedAdagrad",
    "FedAdam",
    "FedAvgM",
    "FedYogi",
    "server_adagrad",
    "server_adam",
    "server_momentum",
    "server_yogi",
]

_Float64 = np.ndarray[Any, np.dtype[np.float64]]

_RATES = frozenset({"eta", "server_learning_rate", "tau"})
"""Parameters that must be positive and finite."""
_DECAYS = frozenset({"server_momentum", "beta_1", "beta_2"})
"""Parameters that must lie in [0, 1)."""


def _check(owner: str, **params: float) -> None:
    """ConfigError naming ``owner``, the parameter, its value and the valid range."""
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{owner}: {name} must be a number, got {value!r}")
        if name in _RATES and not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{owner}: {name} must be positive and finite, got {value}")
        if name in _DECAYS and not 0 <= value < 1:
            raise ConfigError(f"{owner}: {name} must be in [0, 1), got {value}")


class _PerArray(ServerOptimizer):
    """The shared loop: a float64 delta per floating array, its state under its name.

    The state holds ``"<slot>/<array name>"`` for each floating array (slot 0: momentum
    or m, 1: v), in float64.
    """

    name = "server_optimizer"
    num_slots = 1
    """Arrays of state per floating array of the model."""

    @abstractmethod
    def _start(self, shape: tuple[int, ...]) -> list[_Float64]:
        """The state of one array before its first step."""

    @abstractmethod
    def _step(self, delta: _Float64, slots: list[_Float64]) -> _Float64:
        """The float64 step for one array, moving its own copy of the ``slots`` in place."""

    @abstractmethod
    def _params(self) -> dict[str, object]:
        """The parameters, as ``__repr__`` shows them."""

    def init(self, arrays: ArrayRecord) -> ArrayRecord:
        """The starting state of each floating array of ``arrays``."""
        return ArrayRecord(
            (f"{slot}/{name}", Array(data))
            for name, array in arrays.items()
            if array.dtype.kind == "f"
            for slot, data in enumerate(self._start(array.shape))
        )

    def update(
        self, current: ArrayRecord, aggregate: ArrayRecord, state: ArrayRecord
    ) -> tuple[ArrayRecord, ArrayRecord]:
        """``current + step`` for floating arrays and the state after the step.

        Integer, boolean and complex arrays take the aggregate's own.
        """
        self._check_layout(current, aggregate, state)
        out, after = ArrayRecord(), ArrayRecord()
        for name, array in current.items():
            if array.dtype.kind != "f":
                out[name] = aggregate[name]
                continue
            target = aggregate[name].numpy().astype(np.float64)
            delta = target - array.numpy().astype(np.float64)
            slots = [
                np.array(state[f"{slot}/{name}"].numpy(), np.float64)  # a copy: state stays
                for slot in range(self.num_slots)
            ]
            step = self._step(delta, slots)
            # aggregate + (step - delta) is current + step; written so, a step equal to the
            # delta (momentum 0, lr 1) gives back the aggregate bit for bit.
            out[name] = Array((target + (step - delta)).astype(array.dtype))
            after.update((f"{slot}/{name}", Array(data)) for slot, data in enumerate(slots))
        return out, after

    def _check_layout(
        self, current: ArrayRecord, aggregate: ArrayRecord, state: ArrayRecord
    ) -> None:
        """RoundError if the arrays differ from the aggregate's or from the state's."""
        shapes = {name: a.shape for name, a in current.items() if a.dtype.kind == "f"}
        if set(aggregate) != set(current) or any(
            aggregate[n].shape != s for n, s in shapes.items()
        ):
            raise RoundError(
                f"{self!r}: the aggregate's arrays {_layout(aggregate)} do not match the "
                f"current model's {_layout(current)}"
            )
        held = {key.partition("/")[2]: a.shape for key, a in state.items() if key.startswith("0/")}
        expected = {f"{slot}/{name}" for name in shapes for slot in range(self.num_slots)}
        if held != shapes or set(state) != expected:
            raise RoundError(
                f"{self!r}: the model's floating arrays changed from {held} to {shapes}; "
                "its state belongs to one model: start a new run"
            )

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self._params().items())
        return f"{self.name}({params})"


def _layout(record: ArrayRecord) -> dict[str, tuple[int, ...]]:
    return {name: a.shape for name, a in record.items()}


class _Momentum(_PerArray):
    name = "server_momentum"

    def __init__(self, server_learning_rate: float, server_momentum: float, nesterov: bool) -> None:
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        self.nesterov = nesterov

    def _start(self, shape: tuple[int, ...]) -> list[_Float64]:
        return [np.zeros(shape, np.float64)]

    def _step(self, delta: _Float64, slots: list[_Float64]) -> _Float64:
        (v,) = slots
        v *= self.server_momentum
        v += delta
        direction = self.server_momentum * v + delta if self.nesterov else v
        return self.server_learning_rate * direction

    def _params(self) -> dict[str, object]:
        return {
            "server_learning_rate": self.server_learning_rate,
            "server_momentum": self.server_momentum,
            "nesterov": self.nesterov,
        }


class _Adaptive(_PerArray):
    """Reddi et al.'s Algorithm 2: first moment m, second moment v, step eta*m/(sqrt(v)+tau)."""

    num_slots = 2

    def __init__(self, eta: float, beta_1: float, beta_2: float, tau: float) -> None:
        self.eta, self.beta_1, self.beta_2, self.tau = eta, beta_1, beta_2, tau

    def _start(self, shape: tuple[int, ...]) -> list[_Float64]:
        return [np.zeros(shape, np.float64), np.full(shape, self.tau**2, np.float64)]

    def _step(self, delta: _Float64, slots: list[_Float64]) -> _Float64:
        m, v = slots
        m *= self.beta_1
        m += (1.0 - self.beta_1) * delta
        self._second_moment(v, delta * delta)
        return self.eta * m / (np.sqrt(v) + self.tau)

    @abstractmethod
    def _second_moment(self, v: _Float64, squared: _Float64) -> None:
        """Update ``v`` in place from ``delta**2``."""

    def _params(self) -> dict[str, object]:
        return {"eta": self.eta, "beta_1": self.beta_1, "beta_2": self.beta_2, "tau": self.tau}


class _Adagrad(_Adaptive):
    name = "server_adagrad"

    def _second_moment(self, v: _Float64, squared: _Float64) -> None:
        v += squared

    def _params(self) -> dict[str, object]:
        return {"eta": self.eta, "beta_1": self.beta_1, "tau": self.tau}


class _Adam(_Adaptive):
    name = "server_adam"

    def _second_moment(self, v: _Float64, squared: _Float64) -> None:
        v *= self.beta_2
        v += (1.0 - self.beta_2) * squared


class _Yogi(_Adaptive):
    name = "server_yogi"

    def _second_moment(self, v: _Float64, squared: _Float64) -> None:
        v -= (1.0 - self.beta_2) * squared * np.sign(v - squared)


def server_momentum(
    server_learning_rate: float = 1.0, server_momentum: float = 0.9, nesterov: bool = False
) -> ServerOptimizer:
    """Momentum on the deltas (FedAvgM): ``v = server_momentum*v + delta``, a step of ``lr*v``.

    ``lr`` is ``server_learning_rate``; with ``nesterov`` the step is
    ``lr * (server_momentum*v + delta)``. ``server_momentum=0, server_learning_rate=1``
    gives back the aggregate exactly: FedAvg. The parameters are named as FedAvgM's (and
    Flower's).
    """
    _check(
        "server_momentum",
        server_learning_rate=server_learning_rate,
        server_momentum=server_momentum,
    )
    return _Momentum(float(server_learning_rate), float(server_momentum), bool(nesterov))


def server_adagrad(eta: float = 0.1, beta_1: float = 0.0, tau: float = 1e-9) -> ServerOptimizer:
    """Adagrad on the deltas: ``v += delta**2``, step ``eta*m / (sqrt(v) + tau)``.

    ``m = beta_1*m + (1-beta_1)*delta`` as in Reddi et al.; the default ``beta_1=0`` makes
    ``m`` the round's delta. ``v`` starts at ``tau**2``. ``eta`` is the server learning
    rate, named as FedAdagrad's (and Flower's).
    """
    _check("server_adagrad", eta=eta, beta_1=beta_1, tau=tau)
    return _Adagrad(float(eta), float(beta_1), 0.0, float(tau))


def server_adam(
    eta: float = 0.01, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-9
) -> ServerOptimizer:
    """Adam on the deltas, without bias correction (as in Reddi et al.).

    ``m = beta_1*m + (1-beta_1)*delta``, ``v = beta_2*v + (1-beta_2)*delta**2`` (from
    ``v = tau**2``), step ``eta*m / (sqrt(v) + tau)``. The parameters are named as
    FedAdam's (and Flower's).
    """
    _check("server_adam", eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
    return _Adam(float(eta), float(beta_1), float(beta_2), float(tau))


def server_yogi(
    eta: float = 0.01, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3
) -> ServerOptimizer:
    """Yogi on the deltas: Adam whose second moment moves additively, so it adapts slower.

    ``v = v - (1-beta_2) * delta**2 * sign(v - delta**2)`` (from ``v = tau**2``); the rest
    as :func:`server_adam`.
    """
    _check("server_yogi", eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
    return _Yogi(float(eta), float(beta_1), float(beta_2), float(tau))


def _refuse_chain(strategy: str, optimizer: str, options: Mapping[str, object]) -> None:
    """A chain given to a server-optimizer strategy: point to the one chain that has both."""
    if "aggregation" in options:
        raise ConfigError(
            f"{strategy} is FedAvg with {optimizer}(...) as its aggregation and takes no "
            f"aggregation=: put both in one chain, FedAvg(aggregation=chain(..., "
            f"{optimizer}(...))), e.g. chain(dp_fixed_clip(...), {optimizer}(...))"
        )


_momentum = server_momentum  # FedAvgM's parameter of the same name hides the function


class FedAvgM(FedAvg):
    """FedAvg with server momentum (Hsu et al. 2019, https://arxiv.org/abs/1909.06335).

    Args:
        server_learning_rate: scales the momentum step (1.0: FedAvg's own step size).
        server_momentum: the momentum in [0, 1) (0 with a learning rate of 1: plain FedAvg).
        **options: FedAvg's keyword arguments.
    """

    def __init__(
        self,
        *,
        server_learning_rate: float = 1.0,
        server_momentum: float = 0.9,
        **options: Unpack[FedAvgOptions],
    ) -> None:
        _check(
            "FedAvgM", server_learning_rate=server_learning_rate, server_momentum=server_momentum
        )
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        optimizer = _momentum(server_learning_rate, server_momentum)
        _refuse_chain("FedAvgM", "server_momentum", options)
        super().__init__(aggregation=chain(optimizer), **options)


class FedAdagrad(FedAvg):
    """FedAvg with an Adagrad step on the server (Reddi et al. 2021, arXiv:2003.00295).

    Args:
        eta: the server learning rate.
        tau: the adaptivity: keeps the step finite where the deltas have been small.
        **options: FedAvg's keyword arguments.
    """

    def __init__(
        self, *, eta: float = 0.1, tau: float = 1e-9, **options: Unpack[FedAvgOptions]
    ) -> None:
        _check("FedAdagrad", eta=eta, tau=tau)
        self.eta, self.tau = eta, tau
        _refuse_chain("FedAdagrad", "server_adagrad", options)
        super().__init__(aggregation=chain(server_adagrad(eta=eta, tau=tau)), **options)


class FedAdam(FedAvg):
    """FedAvg with an Adam step on the server (Reddi et al. 2021, arXiv:2003.00295).

    Args:
        eta: the server learning rate.
        beta_1: the decay of the first moment (the deltas' running mean).
        beta_2: the decay of the second moment (their running mean square).
        tau: the adaptivity: keeps the step finite where the deltas have been small.
        **options: FedAvg's keyword arguments.
    """

    def __init__(
        self,
        *,
        eta: float = 0.01,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-9,
        **options: Unpack[FedAvgOptions],
    ) -> None:
        _check("FedAdam", eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
        self.eta, self.beta_1, self.beta_2, self.tau = eta, beta_1, beta_2, tau
        optimizer = server_adam(eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
        _refuse_chain("FedAdam", "server_adam", options)
        super().__init__(aggregation=chain(optimizer), **options)


class FedYogi(FedAvg):
    """FedAvg with a Yogi step on the server (Reddi et al. 2021, arXiv:2003.00295).

    Args:
        eta: the server learning rate.
        beta_1: the decay of the first moment (the deltas' running mean).
        beta_2: the rate at which the second moment moves toward the squared deltas.
        tau: the adaptivity: keeps the step finite where the deltas have been small.
        **options: FedAvg's keyword arguments.
    """

    def __init__(
        self,
        *,
        eta: float = 0.01,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
        **options: Unpack[FedAvgOptions],
    ) -> None:
        _check("FedYogi", eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
        self.eta, self.beta_1, self.beta_2, self.tau = eta, beta_1, beta_2, tau
        optimizer = server_yogi(eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
        _refuse_chain("FedYogi", "server_yogi", options)
        super().__init__(aggregation=chain(optimizer), **options)
