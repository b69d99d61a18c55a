"""SCAFFOLD: control variates that correct client drift (Karimireddy et al., 2020).

"SCAFFOLD: Stochastic Controlled Averaging for Federated Learning", ICML 2020,
https://arxiv.org/abs/1910.06378

The server keeps a control variate ``c`` (float64, shaped like the model, zeros at the
start of a run) and sends it with each train message under ``"scaffold.c"``. Each node
keeps its own ``c_i`` in ``context.state``, adds ``c - c_i`` to its gradients at every local
step, and after ``K`` steps of rate ``lr`` sets (option II of the paper)
``c_i+ = c_i - c + (x - y_i) / (K * lr)``, replying with its model ``y_i`` under ``"arrays"``
and ``delta_c_i = c_i+ - c_i`` under ``"scaffold.delta-c"``. The server then takes
``x <- x + server_learning_rate * mean(y_i - x)`` and ``c <- c + |S|/N * mean(delta_c_i)``,
with ``S`` the valid replies and ``N`` the nodes available that round. As in the paper the
means are unweighted: every node counts once, whatever its ``num-examples``.

Parameters: ``server_learning_rate`` (> 0, the global step; 1 takes the mean model) and
FedAvg's options. ``c`` is the strategy's state (``init_state`` makes it, ``aggregate_train``
returns the next one), reported after each round, so a run resumed from the link's
database carries on with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from ..context import Context
from ..errors import ConfigError
from ..message import Message
from ..records import ArrayRecord, ConfigRecord, MetricRecord
from ..server import Grid
from ._aggregate import WeightedSum, all_finite, cast_to
from ._base import streams_replies
from ._fedavg import FedAvg, refuse_aggregation
from ._validate import ARRAYS_KEY, METRICS_KEY

if TYPE_CHECKING:
    import torch
    from typing_extensions import Unpack

    from ._fedavg import FedAvgOptions

__all__ = ["CONTROL_KEY", "DELTA_CONTROL_KEY", "LOCAL_CONTROL_KEY", "Scaffold", "ScaffoldClient"]

CONTROL_KEY = "scaffold.c"
"""Content key of the server control variate ``c`` in a train message."""
DELTA_CONTROL_KEY = "scaffold.delta-c"
"""Content key of a node's control variate change ``delta_c_i`` in its train reply."""
LOCAL_CONTROL_KEY = "scaffold.c-i"
"""``context.state`` key of a node's own control variate ``c_i``."""


class Scaffold(FedAvg):
    """FedAvg with SCAFFOLD's server control variate (option II; unweighted means).

    Nodes use :class:`ScaffoldClient` (or do its math) and reply with ``"arrays"``,
    ``"metrics"`` and ``"scaffold.delta-c"``; a reply without a well-formed change is set
    aside. The control variate is the strategy's state: ``result.strategy_state`` after a
    run, and what the link's database keeps with each round.

    Args:
        server_learning_rate: the global step size (> 0; 1 takes the mean of the models).
        **options: FedAvg's keyword arguments (``weight_key`` still weights the metrics).
    """

    def __init__(self, server_learning_rate: float = 1.0, **options: Unpack[FedAvgOptions]) -> None:
        if not (math.isfinite(server_learning_rate) and server_learning_rate > 0):
            raise ConfigError(
                f"server_learning_rate must be a finite number > 0, got {server_learning_rate}"
            )
        refuse_aggregation("Scaffold", options)
        if options.get("over_selection"):
            raise ConfigError(
                "Scaffold cannot over-select: a node whose reply is not waited for has already "
                "moved its control variate c_i, and the server's c would never include that "
                "change, so the two drift apart; drop over_selection (round_deadline_s is "
                "allowed, with the same caveat for the nodes that miss it: docs/strategies.md)"
            )
        super().__init__(**options)
        self.server_learning_rate = float(server_learning_rate)
        self._num_available = 0

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, server_learning_rate={self.server_learning_rate})"

    def init_state(self, arrays: ArrayRecord) -> ArrayRecord:
        """The control variate ``c`` a run starts from: zeros shaped like the model."""
        return _zeros_like(arrays)

    def configure_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        config: ConfigRecord,
        grid: Grid,
        state: ArrayRecord,
    ) -> list[Message]:
        """FedAvg's train messages, each carrying ``c`` (the state) under ``"scaffold.c"``."""
        messages = super().configure_train(server_round, arrays, config, grid, state)
        self._num_available = max(len(grid.node_ids()), len(messages))
        for message in messages:
            message.content[CONTROL_KEY] = ArrayRecord(state)
        return messages

    @streams_replies
    def aggregate_train(
        self,
        server_round: int,
        arrays: ArrayRecord,
        replies: Iterable[Message],
        state: ArrayRecord,
    ) -> tuple[ArrayRecord | None, MetricRecord, ArrayRecord]:
        """Step ``x`` toward the mean model and ``c`` (the state) by the summed changes over N."""
        models, changes = WeightedSum(arrays), WeightedSum(state)
        metrics: list[MetricRecord] = []
        for reply in replies:
            metrics.append(reply.content.metrics(METRICS_KEY))
            models.add(reply.content.arrays(ARRAYS_KEY), 1.0)
            changes.add(reply.content.arrays(DELTA_CONTROL_KEY), 1.0)
            del reply  # hold no reply while the next one comes in
        aggregated = self.train_metrics(metrics)
        mean_model, mean_change = models.mean(), changes.mean()
        if mean_model is None or mean_change is None:
            return None, aggregated, state
        share = models.count / max(self._num_available, models.count)
        control = ArrayRecord(
            (name, c.numpy() + share * mean_change[name].numpy()) for name, c in state.items()
        )
        return self._step(arrays, mean_model), aggregated, control

    def _step(self, current: ArrayRecord, mean: ArrayRecord) -> ArrayRecord:
        """``x + lr * (mean - x)``, each array back in its own dtype."""
        if self.server_learning_rate == 1.0:
            return mean
        lr = self.server_learning_rate
        out = ArrayRecord()
        for name, x in current.items():
            work = x.numpy().astype(np.complex128 if x.dtype.kind == "c" else np.float64)
            stepped = work + lr * (mean[name].numpy() - work)
            out[name] = cast_to(stepped, x.dtype)
        return out

    def check_train_reply(self, reply: Message, arrays: ArrayRecord) -> str | None:
        """FedAvg's checks, and a finite float ``"scaffold.delta-c"`` shaped like the model."""
        reason = super().check_train_reply(reply, arrays)
        if reason is not None:
            return reason
        change = reply.content.get(DELTA_CONTROL_KEY)
        if not isinstance(change, ArrayRecord):
            return (
                f"reply has no ArrayRecord under {DELTA_CONTROL_KEY!r} (the node's control "
                "variate change: use ScaffoldClient in the train handler)"
            )
        if list(change) != list(arrays):
            return f"reply {DELTA_CONTROL_KEY!r} names {list(change)}, the model {list(arrays)}"
        for name, expected in arrays.items():
            got = change[name]
            if got.shape != expected.shape:
                return (
                    f"reply {DELTA_CONTROL_KEY!r}[{name!r}] has shape {got.shape}, the model "
                    f"has {expected.shape}"
                )
            if got.dtype.kind != "f" or not all_finite(got.numpy()):
                return f"reply {DELTA_CONTROL_KEY!r}[{name!r}] must hold finite floats"
        return None


class ScaffoldClient:
    """SCAFFOLD on a node: corrects each local step's gradients, then updates ``c_i``.

    Reads ``c`` from the train message and ``c_i`` from ``context.state`` (zeros the first
    time). Option II assumes plain SGD with a fixed rate ``lr`` over ``K`` local steps::

        @app.train()
        def train(msg, context):
            model = Net()
            frameworks.torch.load_arrays(model, msg.content.arrays())
            scaffold = ScaffoldClient(msg, context, model)
            optimizer = torch.optim.SGD(model.parameters(), lr=lr)
            for x, y in batches:
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                scaffold.correct_gradients()  # grad += c - c_i
                optimizer.step()
            delta_c = scaffold.finish(learning_rate=lr)  # stores c_i+ in context.state
            arrays = frameworks.torch.to_arrays(model)
            metrics = MetricRecord({"num-examples": n})
            return msg.reply(
                RecordDict({"arrays": arrays, "metrics": metrics, "scaffold.delta-c": delta_c})
            )

    Only trainable parameters are corrected; buffers (batch-norm statistics) and frozen
    parameters keep ``c_i = 0``.
    """

    def __init__(self, msg: Message, context: Context, model: torch.nn.Module) -> None:
        control = msg.content.get(CONTROL_KEY)
        if not isinstance(control, ArrayRecord):
            raise ConfigError(
                f"the train message has no ArrayRecord under {CONTROL_KEY!r}: the server "
                "strategy must be Scaffold"
            )
        self._global = msg.content.arrays(ARRAYS_KEY)
        self._control = control
        self._context = context
        self._params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        unknown = [name for name in self._params if name not in control]
        if unknown:
            raise ConfigError(
                f"the model's parameters {unknown} are not in the received control variate: "
                "build the global ArrayRecord from this model's state_dict"
            )
        stored = context.state.get(LOCAL_CONTROL_KEY)
        self._local = stored if _same_layout(stored, control) else _zeros_like(control)
        self._corrections: dict[str, torch.Tensor] | None = None
        self.num_steps = 0  # local steps so far: calls of correct_gradients

    @property
    def local_control(self) -> ArrayRecord:
        """The node's ``c_i`` at the start of the round."""
        return self._local

    def correct_gradients(self) -> None:
        """Add ``c - c_i`` to each parameter's gradient: call after ``backward()``."""
        import torch

        if self._corrections is None:
            self._corrections = {
                name: torch.from_numpy(self._control[name].numpy() - self._local[name].numpy()).to(
                    device=param.device, dtype=param.dtype
                )
                for name, param in self._params.items()
            }
        with torch.no_grad():
            for name, param in self._params.items():
                if param.grad is not None:
                    param.grad.add_(self._corrections[name])
        self.num_steps += 1

    def finish(self, learning_rate: float, num_steps: int | None = None) -> ArrayRecord:
        """Store ``c_i+ = c_i - c + (x - y_i) / (K * lr)`` in the state; return its change.

        ``K`` is ``num_steps``, by default the number of ``correct_gradients`` calls.
        """
        steps = self.num_steps if num_steps is None else num_steps
        if steps < 1:
            raise ConfigError(
                f"num_steps must be 1 or more, got {steps}: call correct_gradients() at each "
                "local step, or pass num_steps"
            )
        if not (math.isfinite(learning_rate) and learning_rate > 0):
            raise ConfigError(f"learning_rate must be a finite number > 0, got {learning_rate}")
        updated, change = ArrayRecord(), ArrayRecord()
        for name, c in self._control.items():
            c_i = self._local[name].numpy().astype(np.float64)
            new = c_i
            if name in self._params:
                x = self._global[name].numpy().astype(np.float64)
                y = self._params[name].detach().cpu().double().numpy()
                new = c_i - c.numpy() + (x - y) / (steps * learning_rate)
            updated[name] = new
            change[name] = new - c_i
        self._context.state[LOCAL_CONTROL_KEY] = updated
        return change


def _same_layout(stored: object, control: ArrayRecord) -> bool:
    return (
        isinstance(stored, ArrayRecord)
        and list(stored) == list(control)
        and all(stored[name].shape == a.shape for name, a in control.items())
    )


def _zeros_like(record: ArrayRecord) -> ArrayRecord:
    return ArrayRecord((name, np.zeros(a.shape, np.float64)) for name, a in record.items())
