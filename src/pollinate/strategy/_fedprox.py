"""FedProx: FedAvg whose nodes add a proximal term to their loss (Li et al., 2020).

"Federated Optimization in Heterogeneous Networks", MLSys 2020,
https://arxiv.org/abs/1812.06127

The server side is FedAvg that also sends ``proximal-mu`` in every train config; each node
minimises ``loss + mu/2 * ||w - w_global||^2`` (:func:`proximal_term`), which keeps nodes
with skewed data from drifting far from the global model. ``proximal_mu=0`` is FedAvg.

Parameters: ``proximal_mu`` (mu >= 0, the proximal term's weight) and FedAvg's options.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError
from ..message import Message
from ..records import ArrayRecord, ConfigRecord
from ..server import Grid
from ._compose import Aggregation
from ._fedavg import FedAvg

if TYPE_CHECKING:
    import torch
    from typing_extensions import Unpack

    from ._fedavg import FedAvgOptions

__all__ = ["PROXIMAL_MU_KEY", "FedProx", "proximal_term"]

PROXIMAL_MU_KEY = "proximal-mu"
"""The train config key that carries mu to the nodes."""


class FedProx(FedAvg):
    """FedAvg that sends ``proximal-mu`` with each train message (Li et al., 2020).

    Nodes read it with ``msg.content.config().value("proximal-mu", float)`` and add
    ``proximal_term(model, global_params, mu)`` to each local step's loss.

    Args:
        proximal_mu: the weight mu of the proximal term (0 or more; 0 is FedAvg).
        aggregation: as for FedAvg (default: the weighted average).
        **options: FedAvg's keyword arguments.
    """

    def __init__(
        self,
        proximal_mu: float = 0.01,
        *,
        aggregation: Aggregation | None = None,
        **options: Unpack[FedAvgOptions],
    ) -> None:
        if not (math.isfinite(proximal_mu) and proximal_mu >= 0):
            raise ConfigError(f"proximal_mu must be a finite number >= 0, got {proximal_mu}")
        super().__init__(aggregation=aggregation, **options)
        self.proximal_mu = float(proximal_mu)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, proximal_mu={self.proximal_mu})"

    def configure_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        config: ConfigRecord,
        grid: Grid,
        state: ArrayRecord,
    ) -> list[Message]:
        """FedAvg's train messages, their config carrying ``proximal-mu``."""
        with_mu = ConfigRecord(config)
        with_mu[PROXIMAL_MU_KEY] = self.proximal_mu
        return super().configure_train(server_round, arrays, with_mu, grid, state)


def proximal_term(
    model: torch.nn.Module, global_params: Sequence[torch.Tensor] | ArrayRecord, mu: float
) -> torch.Tensor:
    """``mu/2 * sum ||w - w_global||^2`` over ``model``'s parameters, to add to the loss.

    ``global_params`` is the received model: an ArrayRecord (matched to the parameters by
    name, buffers ignored) or tensors in ``model.parameters()`` order. Convert the record
    to tensors once per round when steps are many: a record is converted on every call.
    The global parameters are detached, so the gradient is ``mu * (w - w_global)``.
    """
    import torch

    if not (math.isfinite(mu) and mu >= 0):
        raise ConfigError(f"mu must be a finite number >= 0, got {mu}")
    named = list(model.named_parameters())
    anchors = _anchors(named, global_params)
    total = torch.zeros((), dtype=named[0][1].dtype if named else torch.float32)
    for (name, param), anchor in zip(named, anchors, strict=True):
        anchor = anchor.detach().to(device=param.device, dtype=param.dtype)
        if anchor.shape != param.shape:
            raise ConfigError(
                f"global_params for {name!r} has shape {tuple(anchor.shape)}, the model's "
                f"parameter has {tuple(param.shape)}"
            )
        total = total.to(param.device) + (param - anchor).pow(2).sum()
    return (mu / 2.0) * total


def _anchors(
    named: Sequence[tuple[str, torch.Tensor]], global_params: Sequence[torch.Tensor] | ArrayRecord
) -> list[torch.Tensor]:
    """The global tensor of each named parameter, in the same order."""
    if isinstance(global_params, ArrayRecord):
        missing = [name for name, _ in named if name not in global_params]
        if missing:
            raise ConfigError(
                f"global_params has no arrays for the model's parameters {missing}: pass the "
                "received ArrayRecord (built from the same model's state_dict)"
            )
        import torch

        return [torch.from_numpy(np.array(global_params[name].numpy())) for name, _ in named]
    anchors = list(global_params)
    if len(anchors) != len(named):
        raise ConfigError(
            f"global_params has {len(anchors)} tensors, the model has {len(named)} parameters"
        )
    return anchors
