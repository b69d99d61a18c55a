"""q-FedAvg: fairer models by weighting nodes with high loss more (Li et al., 2020).

"Fair Resource Allocation in Federated Learning", ICLR 2020,
https://arxiv.org/abs/1905.10497

Each node reports its loss ``F_k`` (the paper: of the received model on its data). With
``L = 1/lr``, ``delta_k = L * (w - w_k)``, ``Delta_k = F_k^q * delta_k`` and
``h_k = q * F_k^(q-1) * ||delta_k||^2 + L * F_k^q`` (norm over the whole model), the next
model is ``w - sum(Delta_k) / sum(h_k)``. ``q = 0`` gives the plain (unweighted) mean of
the models; larger ``q`` pulls the model toward the nodes it serves worst.

Parameters (the same names for ``qfedavg`` and ``QFedAvg``): ``q`` (>= 0, the fairness
exponent), ``qffl_learning_rate`` (> 0, the local learning rate ``lr`` the Lipschitz
estimate ``L = 1/lr`` comes from) and ``loss_key`` (the reply metric holding ``F_k``).
Node weights are not used: every node counts once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, RoundError
from ..records import Array, ArrayRecord, is_finite_number
from ._aggregate import cast_to
from ._compose import Aggregator, Update, chain
from ._fedavg import FedAvg
from ._robust import refuse_chain

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._fedavg import FedAvgOptions

__all__ = ["QFedAvg", "qfedavg"]

_EPSILON = 1e-10
"""Added to a loss before ``F^(q-1)``, so a loss of exactly 0 does not divide by zero."""


class _QFedAvg(Aggregator):
    """The q-FFL step, folded one update at a time in float64: O(model) memory."""

    streaming = True

    def __init__(self, q: float, qffl_learning_rate: float, loss_key: str) -> None:
        self.q, self.qffl_learning_rate, self.loss_key = q, qffl_learning_rate, loss_key

    def __repr__(self) -> str:
        return (
            f"qfedavg(q={self.q}, qffl_learning_rate={self.qffl_learning_rate}, "
            f"loss_key={self.loss_key!r})"
        )

    def aggregate(self, updates: Iterable[Update], current: ArrayRecord) -> ArrayRecord | None:
        """``current - sum(Delta_k) / sum(h_k)`` over the updates (None if there were none)."""
        lipschitz = 1.0 / self.qffl_learning_rate
        # Only floating arrays learn; counters (BatchNorm's num_batches_tracked) stay as they are.
        learned = [name for name, a in current.items() if a.dtype.kind in "fc"]
        sums = {name: np.zeros(current[name].shape, _work_dtype(current[name])) for name in learned}
        h_total, count = 0.0, 0
        with np.errstate(over="raise", invalid="raise"):
            try:
                for update in updates:
                    loss = self._loss(update)
                    squared_norm = lipschitz**2 * sum(
                        _squared_norm(_difference(current[name], update.arrays[name]))
                        for name in learned
                    )
                    scale = float(np.float64(loss) ** self.q)
                    for name, total in sums.items():
                        total += (scale * lipschitz) * _difference(
                            current[name], update.arrays[name]
                        )
                    first = 0.0
                    if self.q != 0:
                        first = float(self.q * np.float64(loss + _EPSILON) ** (self.q - 1))
                    h_total += first * squared_norm + lipschitz * scale
                    count += 1
                    del update
            except FloatingPointError:
                raise RoundError(
                    f"qfedavg(q={self.q}) overflowed: a loss raised to the power q is too large "
                    "for float64; lower q, or scale the losses the nodes report"
                ) from None
        if count == 0:
            return None
        if h_total == 0.0 or not math.isfinite(h_total):  # every loss 0 (q > 0): no step
            if h_total != 0.0:
                raise RoundError(f"qfedavg(q={self.q}) overflowed: lower q")
            return ArrayRecord(current)
        return ArrayRecord(
            (
                name,
                Array(cast_to(_as_work(a) - sums[name] / h_total, a.dtype)) if name in sums else a,
            )
            for name, a in current.items()
        )

    def _loss(self, update: Update) -> float:
        value = update.metrics.get(self.loss_key)
        if value is None:
            raise RoundError(
                f"qfedavg needs each node's loss under the metric {self.loss_key!r}; node "
                f"{update.node_id} sent {sorted(update.metrics)}: report it in the train reply "
                "or set loss_key"
            )
        if not is_finite_number(value) or float(value) < 0:
            raise RoundError(
                f"qfedavg: node {update.node_id}'s loss {self.loss_key!r} is {value!r}; it "
                "must be a finite number >= 0"
            )
        return float(value)


def _work_dtype(array: Array) -> type[np.floating[Any]] | type[np.complexfloating[Any, Any]]:
    return np.complex128 if array.dtype.kind == "c" else np.float64


def _as_work(array: Array) -> np.ndarray[Any, Any]:
    return array.numpy().astype(_work_dtype(array))


def _difference(current: Array, other: Array) -> np.ndarray[Any, Any]:
    difference: np.ndarray[Any, Any] = _as_work(current) - _as_work(other)
    return difference


def _squared_norm(data: np.ndarray[Any, Any]) -> float:
    flat = data.reshape(-1)
    return float(np.einsum("i,i->", flat, flat.conj()).real)  # no BLAS threads: see _robust


def qfedavg(q: float, qffl_learning_rate: float, loss_key: str = "train-loss") -> Aggregator:
    """The q-FFL aggregator: ``q >= 0`` the fairness exponent, ``qffl_learning_rate > 0``.

    ``qffl_learning_rate`` is the nodes' learning rate. Each update's metrics must hold
    its loss under ``loss_key`` (a RoundError otherwise).
    """
    _check_parameters(q, qffl_learning_rate)
    return _QFedAvg(float(q), float(qffl_learning_rate), loss_key)


def _check_parameters(q: float, qffl_learning_rate: float) -> None:
    if not (math.isfinite(q) and q >= 0):
        raise ConfigError(f"q must be a finite number >= 0, got {q}")
    if not (math.isfinite(qffl_learning_rate) and qffl_learning_rate > 0):
        raise ConfigError(
            f"qffl_learning_rate must be a finite number > 0, got {qffl_learning_rate}"
        )


class QFedAvg(FedAvg):
    """FedAvg with the q-FFL aggregator: ``chain(qfedavg(q, qffl_learning_rate, loss_key))``.

    Args:
        q: the fairness exponent (0 or more; 0 is the unweighted mean of the models).
        qffl_learning_rate: the nodes' learning rate, giving the Lipschitz estimate 1/lr.
        loss_key: the train reply metric holding each node's loss.
        **options: FedAvg's keyword arguments.
    """

    def __init__(
        self,
        q: float = 0.2,
        qffl_learning_rate: float = 0.1,
        loss_key: str = "train-loss",
        **options: Unpack[FedAvgOptions],
    ) -> None:
        refuse_chain("QFedAvg", "q-FFL's loss-weighted step", options)
        _check_parameters(q, qffl_learning_rate)
        aggregator = qfedavg(q, qffl_learning_rate, loss_key)
        super().__init__(aggregation=chain(aggregator), **options)
        self.q, self.qffl_learning_rate, self.loss_key = q, qffl_learning_rate, loss_key
