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
aggregate as it is. State is kept by array name for one model: if the arrays' names or
shapes change between rounds the step raises RoundError rather than silently starting
afresh (``reset()``, which every run calls first, forgets the state).
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

_RATES = frozenset({"lr", "eta", "server_learning_rate", "tau"})
"""Parameters that must be positive and finite."""
_DECAYS = frozenset({"momentum", "server_momentum", "beta_1", "beta_2"})
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
    """The shared loop: a float64 delta per floating array, state kept under its name."""

    name = "server_optimizer"

    def __init__(self) -> None:
        self._state: dict[str, list[_Float64]] = {}
        self._shapes: dict[str, tuple[int, ...]] | None = None

    @abstractmethod
    def _start(self, shape: tuple[int, ...]) -> list[_Float64]:
        """The state of one array before its first step."""

    @abstractmethod
    def _step(self, delta: _Float64, state: list[_Float64]) -> _Float64:
        """The float64 step for one array, updating its ``state`` in place."""

    @abstractmethod
    def _params(self) -> dict[str, object]:
        """The parameters, as ``__repr__`` shows them."""

    def step(self, current: ArrayRecord, aggregate: ArrayRecord) -> ArrayRecord:
        """``current + step`` for floating arrays; the aggregate's own for the rest."""
        self._check_layout(current, aggregate)
        out = ArrayRecord()
        for name, array in current.items():
            if array.dtype.kind != "f":
                out[name] = aggregate[name]
                continue
            target = aggregate[name].numpy().astype(np.float64)
            delta = target - array.numpy().astype(np.float64)
            if name not in self._state:
                self._state[name] = self._start(array.shape)
            step = self._step(delta, self._state[name])
            # aggregate + (step - delta) is current + step; written so, a step equal to the
            # delta (momentum 0, lr 1) gives back the aggregate bit for bit.
            out[name] = Array((target + (step - delta)).astype(array.dtype))
        return out

    def _check_layout(self, current: ArrayRecord, aggregate: ArrayRecord) -> None:
        """RoundError if the arrays differ from the aggregate's or from the last round's."""
        shapes = {name: a.shape for name, a in current.items() if a.dtype.kind == "f"}
        if set(aggregate) != set(current) or any(
            aggregate[n].shape != s for n, s in shapes.items()
        ):
            raise RoundError(
                f"{self!r}: the aggregate's arrays {_layout(aggregate)} do not match the "
                f"current model's {_layout(current)}"
            )
        if self._shapes is None:
            self._shapes = shapes
        elif shapes != self._shapes:
            raise RoundError(
                f"{self!r}: the model's floating arrays changed from {self._shapes} to "
                f"{shapes}; its state belongs to one model: call reset() or start a new run"
            )

    def reset(self) -> None:
        """Forget every array's state (a new run starts)."""
        self._state.clear()
        self._shapes = None

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        """Each array's state, as ``"<slot>/<array name>"`` (slot 0: momentum or m, 1: v)."""
        return {
            f"{slot}/{name}": data
            for name, slots in self._state.items()
            for slot, data in enumerate(slots)
        }

    def load_state(self, state: Mapping[str, np.ndarray[Any, Any]]) -> None:
        """Take back what ``state`` gave: a resumed run carries on with the same moments."""
        slots: dict[str, dict[int, _Float64]] = {}
        for key, data in state.items():
            slot, _, name = key.partition("/")
            slots.setdefault(name, {})[int(slot)] = np.array(data, np.float64)
        self._state = {name: [held[i] for i in sorted(held)] for name, held in slots.items()}
        self._shapes = None

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self._params().items())
        return f"{self.name}({params})"


def _layout(record: ArrayRecord) -> dict[str, tuple[int, ...]]:
    return {name: a.shape for name, a in record.items()}


class _Momentum(_PerArray):
    name = "server_momentum"

    def __init__(self, lr: float, momentum: float, nesterov: bool) -> None:
        super().__init__()
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov

    def _start(self, shape: tuple[int, ...]) -> list[_Float64]:
        return [np.zeros(shape, np.float64)]

    def _step(self, delta: _Float64, state: list[_Float64]) -> _Float64:
        (v,) = state
        v *= self.momentum
        v += delta
        direction = self.momentum * v + delta if self.nesterov else v
        return self.lr * direction

    def _params(self) -> dict[str, object]:
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}


class _Adaptive(_PerArray):
    """Reddi et al.'s Algorithm 2: first moment m, second moment v, step lr*m/(sqrt(v)+tau)."""

    def __init__(self, lr: float, beta_1: float, beta_2: float, tau: float) -> None:
        super().__init__()
        self.lr, self.beta_1, self.beta_2, self.tau = lr, beta_1, beta_2, tau

    def _start(self, shape: tuple[int, ...]) -> list[_Float64]:
        return [np.zeros(shape, np.float64), np.full(shape, self.tau**2, np.float64)]

    def _step(self, delta: _Float64, state: list[_Float64]) -> _Float64:
        m, v = state
        m *= self.beta_1
        m += (1.0 - self.beta_1) * delta
        self._second_moment(v, delta * delta)
        return self.lr * m / (np.sqrt(v) + self.tau)

    @abstractmethod
    def _second_moment(self, v: _Float64, squared: _Float64) -> None:
        """Update ``v`` in place from ``delta**2``."""

    def _params(self) -> dict[str, object]:
        return {"lr": self.lr, "beta_1": self.beta_1, "beta_2": self.beta_2, "tau": self.tau}


class _Adagrad(_Adaptive):
    name = "server_adagrad"

    def _second_moment(self, v: _Float64, squared: _Float64) -> None:
        v += squared

    def _params(self) -> dict[str, object]:
        return {"lr": self.lr, "beta_1": self.beta_1, "tau": self.tau}


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
    lr: float = 1.0, momentum: float = 0.9, nesterov: bool = False
) -> ServerOptimizer:
    """Momentum on the deltas (FedAvgM): ``v = momentum*v + delta``, step ``lr*v``.

    With ``nesterov`` the step is ``lr * (momentum*v + delta)``. ``momentum=0, lr=1`` gives
    back the aggregate exactly: plain FedAvg.
    """
    _check("server_momentum", lr=lr, momentum=momentum)
    return _Momentum(float(lr), float(momentum), bool(nesterov))


def server_adagrad(lr: float = 0.1, beta_1: float = 0.0, tau: float = 1e-9) -> ServerOptimizer:
    """Adagrad on the deltas: ``v += delta**2``, step ``lr*m / (sqrt(v) + tau)``.

    ``m = beta_1*m + (1-beta_1)*delta`` as in Reddi et al.; the default ``beta_1=0`` makes
    ``m`` the round's delta. ``v`` starts at ``tau**2``.
    """
    _check("server_adagrad", lr=lr, beta_1=beta_1, tau=tau)
    return _Adagrad(float(lr), float(beta_1), 0.0, float(tau))


def server_adam(
    lr: float = 0.01, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-9
) -> ServerOptimizer:
    """Adam on the deltas, without bias correction (as in Reddi et al.).

    ``m = beta_1*m + (1-beta_1)*delta``, ``v = beta_2*v + (1-beta_2)*delta**2`` (from
    ``v = tau**2``), step ``lr*m / (sqrt(v) + tau)``.
    """
    _check("server_adam", lr=lr, beta_1=beta_1, beta_2=beta_2, tau=tau)
    return _Adam(float(lr), float(beta_1), float(beta_2), float(tau))


def server_yogi(
    lr: float = 0.01, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3
) -> ServerOptimizer:
    """Yogi on the deltas: Adam whose second moment moves additively, so it adapts slower.

    ``v = v - (1-beta_2) * delta**2 * sign(v - delta**2)`` (from ``v = tau**2``); the rest
    as :func:`server_adam`.
    """
    _check("server_yogi", lr=lr, beta_1=beta_1, beta_2=beta_2, tau=tau)
    return _Yogi(float(lr), float(beta_1), float(beta_2), float(tau))


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
        optimizer = _momentum(lr=server_learning_rate, momentum=server_momentum)
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
        super().__init__(aggregation=chain(server_adagrad(lr=eta, tau=tau)), **options)


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
        optimizer = server_adam(lr=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
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
        optimizer = server_yogi(lr=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)
        super().__init__(aggregation=chain(optimizer), **options)
