"""Vectorized clients: declare a PyTorch client once, train many nodes of it at once.

A ``VectorizedClient`` names a model factory, a per-example loss, optimizer settings, batch
size, epochs and a function giving a node's data (tensors) from its Context. Its
``client_app()`` is an ordinary ClientApp (deployed, each message is trained alone with
``torch.optim``); on ``backend="vectorized"`` a round's sampled nodes are trained together:
their parameters are stacked and each local step runs for all of them in one call
(``torch.func``: ``functional_call`` + ``vmap`` + ``grad``; a Linear-ReLU chain gets
hand-batched products instead, see ``_chain``). Nodes with less data are padded and masked,
so each takes exactly the steps, batches, order and learning rate it would take alone. Nodes
are sorted by their number of steps, so the still-active ones are a prefix of the stack and
each step works on views, never on gathered copies of the weights. Optimizer settings may
follow the round's config (``optimizer_config``); a node trains on the device its context
names.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap

from ..context import Context
from ..errors import AppError
from ..frameworks import torch as torch_records
from ..message import ErrorCode, Message
from ..records import ArrayRecord, MetricRecord, RecordDict
from ._backend import Task, TaskResult
from ._chain import ChainSteps, linear_chain
from ._devices import CPU, DEVICE_KEY
from ._vectorized import BatchTrainer, VectorizedClientApp

__all__ = ["SGD", "Adam", "DataFn", "LossFn", "Optimizer", "SeedFn", "VectorizedClient"]

DataFn = Callable[[Context], tuple[Tensor, Tensor]]
"""A node's examples ``(x, y)`` from its Context: tensors with the same first dimension."""

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``(outputs, targets) -> per-example losses`` (no reduction: the batch mean is taken)."""

SeedFn = Callable[[Message, Context], int]
"""The seed of a node's shuffling generator for one train message."""

State = dict[str, list[Tensor]]


class Optimizer(Protocol):
    """Optimizer settings: a ``torch.optim`` optimizer for one node, a functional one for many."""

    def for_module(self, params: Iterator[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The ``torch.optim`` optimizer the sequential handler uses."""

    @property
    def slots(self) -> int:
        """How many state tensors per parameter the optimizer keeps."""

    def init_state(self, params: list[Tensor]) -> State:
        """Zeroed state for stacked ``params`` (what ``torch.optim`` starts from)."""

    def step(self, params: list[Tensor], grads: list[Tensor], state: State, t: int) -> None:
        """Step ``t`` (0-based) in place on views of the stack, exactly as ``torch.optim``."""


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent as ``torch.optim.SGD`` (no dampening, no Nesterov)."""

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0

    def for_module(self, params: Iterator[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The ``torch.optim.SGD`` with these settings."""
        return torch.optim.SGD(
            params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )

    @property
    def slots(self) -> int:
        """One momentum buffer per parameter when momentum is on."""
        return 1 if self.momentum else 0

    def init_state(self, params: list[Tensor]) -> State:
        """Zeroed momentum buffers: ``0 * momentum + g`` is torch's first buffer, ``g``."""
        return {"momentum": [torch.zeros_like(p) for p in params]} if self.momentum else {}

    def step(self, params: list[Tensor], grads: list[Tensor], state: State, t: int) -> None:
        """One SGD step on views of the stack."""
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            if self.momentum:
                g = state["momentum"][i].mul_(self.momentum).add_(g)
            p.add_(g, alpha=-self.lr)


@dataclass(frozen=True)
class Adam:
    """Adam as ``torch.optim.Adam`` (L2 weight decay added to the gradient, no AMSGrad)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def for_module(self, params: Iterator[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """The ``torch.optim.Adam`` with these settings."""
        return torch.optim.Adam(
            params, lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay
        )

    @property
    def slots(self) -> int:
        """Two moment estimates per parameter."""
        return 2

    def init_state(self, params: list[Tensor]) -> State:
        """Zeroed first and second moments."""
        return {
            "m": [torch.zeros_like(p) for p in params],
            "v": [torch.zeros_like(p) for p in params],
        }

    def step(self, params: list[Tensor], grads: list[Tensor], state: State, t: int) -> None:
        """One Adam step on views of the stack, as torch's single-tensor Adam computes it."""
        beta1, beta2 = self.betas
        bias1 = 1 - beta1 ** (t + 1)
        bias2_sqrt = math.sqrt(1 - beta2 ** (t + 1))
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            m, v = state["m"][i], state["v"][i]
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / bias1)


def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Per-example cross-entropy (the default loss)."""
    return torch.nn.functional.cross_entropy(outputs, targets, reduction="none")


def round_and_partition_seed(message: Message, context: Context) -> int:
    """``server-round * 1_000_003 + partition-id`` (the default shuffling seed)."""
    config = message.content.config_records.get("config")
    server_round = int(config.get("server-round", 0)) if config is not None else 0
    partition = int(context.node_config.get("partition-id", context.node_id))
    return server_round * 1_000_003 + partition


@dataclass(frozen=True)
class VectorizedClient:
    """A PyTorch client declared by its parts, so many nodes of it can train at once.

    ``model_fn`` builds the model (parameters only: no buffers such as batch-norm statistics,
    no randomness such as dropout); ``data_fn`` gives a node's training examples;
    ``eval_data_fn``, if given, its evaluation examples (an ``evaluate`` handler then reports
    ``loss``, ``accuracy`` and ``num-examples``). ``optimizer_config`` names the optimizer
    settings a round's config may set, ``{setting: config key}`` (e.g. ``{"lr": "lr"}``); a
    key the round's config lacks leaves the declared value. A node trains on the device its
    ``context.node_config["device"]`` names (default ``"cpu"``).
    """

    model_fn: Callable[[], torch.nn.Module]
    data_fn: DataFn
    optimizer: Optimizer
    batch_size: int = 32
    epochs: int = 1
    loss_fn: LossFn = cross_entropy
    seed_fn: SeedFn = round_and_partition_seed
    eval_data_fn: DataFn | None = None
    optimizer_config: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise AppError(f"VectorizedClient {name} must be a positive int, got {value!r}")
        settings = _number_settings(self.optimizer)
        for setting, key in self.optimizer_config.items():
            if setting not in settings:
                raise AppError(
                    f"VectorizedClient optimizer_config names {setting!r}, which is not a "
                    f"number setting of {type(self.optimizer).__name__}; it has: "
                    f"{', '.join(settings) or 'none'}"
                )
            if not isinstance(key, str) or not key:
                raise AppError(
                    f"VectorizedClient optimizer_config[{setting!r}] must name a config key "
                    f"(a non-empty string), got {key!r}"
                )

    def optimizer_for(self, message: Message) -> Optimizer:
        """The declared optimizer, with the settings ``optimizer_config`` reads from the config.

        The settings are checked as ``torch.optim`` checks them (a negative lr is an error).
        """
        config = message.content.config_records.get("config")
        overrides: dict[str, float] = {}
        for setting, key in self.optimizer_config.items():
            if config is None or key not in config:
                continue
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise AppError(
                    f"the round's config {key!r} sets the optimizer's {setting} and must be a "
                    f"number, got {value!r}"
                )
            overrides[setting] = float(value)
        if not overrides or not dataclasses.is_dataclass(self.optimizer):
            return self.optimizer
        optimizer: Optimizer = dataclasses.replace(self.optimizer, **overrides)
        optimizer.for_module(iter([torch.nn.Parameter(torch.zeros(1))]))  # torch's own checks
        return optimizer

    def client_app(self) -> VectorizedClientApp:
        """The ClientApp: sequential handlers, and a batch trainer for the vectorized backend."""
        app = VectorizedClientApp(_Trainer(self))
        app.train()(self.train)
        if self.eval_data_fn is not None:
            app.evaluate()(self.evaluate)
        return app

    def train(self, message: Message, context: Context) -> Message:
        """Train one node with ``torch.optim`` (what a deployed node and the inline path do)."""
        device = _node_device(context)
        model = self._model(message.content.arrays()).to(device)
        x, y = self._data(self.data_fn, context, device)
        optimizer = self.optimizer_for(message).for_module(model.parameters())
        generator = torch.Generator().manual_seed(self.seed_fn(message, context))
        for _ in range(self.epochs if len(y) else 0):
            order = torch.randperm(len(y), generator=generator).to(device)
            for first in range(0, len(y), self.batch_size):
                batch = order[first : first + self.batch_size]
                optimizer.zero_grad()
                loss = _per_example(self.loss_fn(model(x[batch]), y[batch]), len(batch)).mean()
                torch.autograd.backward(loss)
                optimizer.step()
        return _reply(message, torch_records.to_arrays(model), len(y))

    def evaluate(self, message: Message, context: Context) -> Message:
        """Mean loss and accuracy of the received model on the node's evaluation data."""
        assert self.eval_data_fn is not None
        device = _node_device(context)
        model = self._model(message.content.arrays()).to(device)
        x, y = self._data(self.eval_data_fn, context, device)
        with torch.no_grad():
            outputs = model(x)
            loss = float(self.loss_fn(outputs, y).mean()) if len(y) else 0.0
            correct = float((outputs.argmax(-1) == y).float().mean()) if len(y) else 0.0
        metrics = MetricRecord({"loss": loss, "accuracy": correct, "num-examples": len(y)})
        return message.reply(RecordDict({"metrics": metrics}))

    def _model(self, arrays: ArrayRecord) -> torch.nn.Module:
        model = self.model_fn()
        if any(True for _ in model.buffers()):
            raise AppError(
                f"{type(model).__name__} has buffers (e.g. batch-norm statistics); a "
                "VectorizedClient's model may hold parameters only"
            )
        return torch_records.load_arrays(model, arrays)

    def _data(
        self, data_fn: DataFn, context: Context, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        data = data_fn(context)
        if (
            not isinstance(data, tuple)
            or len(data) != 2
            or not all(isinstance(t, Tensor) for t in data)
            or len(data[0]) != len(data[1])
        ):
            raise AppError(
                "a VectorizedClient's data function must return (x, y): two tensors with the "
                f"same first dimension, got {_describe(data)}"
            )
        return data[0].to(device), data[1].to(device)


class _Trainer(BatchTrainer):
    """Trains a chunk of nodes of one VectorizedClient together."""

    def __init__(self, client: VectorizedClient) -> None:
        self.client = client
        self._template: torch.nn.Module | None = None

    def template(self) -> torch.nn.Module:
        """One model object, built once, whose parameters ``functional_call`` replaces."""
        if self._template is None:
            self._template = self.client.model_fn()
        return self._template

    def chunk_size(self, memory_budget: int) -> int:
        """Nodes per chunk: parameters, gradients, optimizer state and a working copy each."""
        param_bytes = sum(p.numel() * p.element_size() for p in self.template().parameters())
        per_node = param_bytes * (3 + self._most_slots())
        return max(1, memory_budget // max(1, per_node))

    def _most_slots(self) -> int:
        """The optimizer's state tensors per parameter, counting settings a round may turn on.

        A round whose config turns SGD's momentum on needs a buffer the declaration did not.
        """
        optimizer = self.client.optimizer
        if not self.client.optimizer_config or not dataclasses.is_dataclass(optimizer):
            return optimizer.slots
        turned_on = dataclasses.replace(
            optimizer, **dict.fromkeys(self.client.optimizer_config, 1.0)
        )
        return max(optimizer.slots, turned_on.slots)

    def train_many(self, tasks: Sequence[Task]) -> list[TaskResult]:
        """Train every task's node from the shared arrays; a node whose data fails errs alone.

        Nodes train together if they share a device and optimizer settings.
        """
        results: list[TaskResult] = []
        groups: list[tuple[torch.device, Optimizer, list[_Node]]] = []
        for index, task in enumerate(tasks):
            try:
                device = _node_device(task.context)
                optimizer = self.client.optimizer_for(task.message)
                x, y = self.client._data(self.client.data_fn, task.context, device)
                node = _Node(index, task, x, y, self.client.seed_fn(task.message, task.context))
            except Exception as err:
                results.append(_error(index, task, err))
                continue
            for group_device, group_optimizer, members in groups:
                if group_device == device and group_optimizer == optimizer:
                    members.append(node)
                    break
            else:
                groups.append((device, optimizer, [node]))
        for device, optimizer, members in groups:
            results.extend(self._train_group(device, optimizer, members))
        return results

    def _train_group(
        self, device: torch.device, optimizer: Optimizer, nodes: list[_Node]
    ) -> list[TaskResult]:
        """The replies of nodes that train together; a failure fails each of them."""
        try:
            start = self.client._model(nodes[0].task.message.content.arrays()).to(device)
            trained = self._train(start, [(n.x, n.y, n.seed) for n in nodes], optimizer)
        except Exception as err:
            return [_error(n.index, n.task, err) for n in nodes]
        return [
            TaskResult(n.index, _reply(n.task.message, arrays, len(n.y)), n.task.context.state)
            for n, arrays in zip(nodes, trained, strict=True)
        ]

    def _train(
        self, start: torch.nn.Module, nodes: list[tuple[Tensor, Tensor, int]], optimizer: Optimizer
    ) -> list[ArrayRecord]:
        """Each node's trained arrays, all trained together, in the order of ``nodes``."""
        client = self.client
        plan = _Plan(nodes, client.batch_size, client.epochs)
        names = [name for name, _ in start.named_parameters()]
        shared = [p.detach() for p in start.parameters()]
        stack = [torch.empty(len(nodes), *p.shape, dtype=p.dtype, device=p.device) for p in shared]
        for p, s in zip(shared, stack, strict=True):  # nodes with no data keep the start
            s[plan.trained :].copy_(p.expand_as(s[plan.trained :]))
        state = optimizer.init_state(stack)
        chain = self._chain(names, plan, optimizer)
        loss = grad(functools.partial(self._loss, names))
        first_grads, stacked_grads = vmap(loss, in_dims=(None, 0, 0, 0)), vmap(loss)
        with torch.no_grad():
            for t, a, b, x, y, mask in plan.calls():
                live = [p[a:b] for p in stack]
                per_node = (
                    chain.gradients_or_update(t == 0, shared, live, x, y, mask)
                    if chain is not None
                    else (stacked_grads(live, x, y, mask) if t else first_grads(shared, x, y, mask))
                )
                if per_node is None:  # the chain's fused SGD step updated ``live``
                    continue
                if t == 0:
                    for p, s in zip(shared, live, strict=True):
                        s.copy_(p.expand_as(s))
                views = {key: [s[a:b] for s in slot] for key, slot in state.items()}
                optimizer.step(live, per_node, views, t)
        arrays = [p.cpu().numpy() for p in stack]  # views of the stack on the CPU
        return [
            ArrayRecord({n: a[place] for n, a in zip(names, arrays, strict=True)})
            for place in plan.places
        ]

    def _chain(self, names: list[str], plan: _Plan, optimizer: Optimizer) -> ChainSteps | None:
        """Hand-batched steps for a Linear-ReLU chain fed rows and class indices, else None.

        None means ``vmap``: any other model, loss or kind of targets.
        """
        layers, y = self._layers, plan.y_all
        if (
            layers is None
            or self.client.loss_fn is not cross_entropy
            or plan.x_all.dim() != 2
            or y.dim() != 1
            or y.dtype != torch.long
            or (len(y) > 0 and int(y.min()) < 0)  # cross_entropy's ignore_index
        ):
            return None
        position = {name: i for i, name in enumerate(names)}
        pairs = [(position[f"{layer}.weight"], position[f"{layer}.bias"]) for layer in layers]
        sgd = optimizer if isinstance(optimizer, SGD) and not optimizer.momentum else None
        return ChainSteps(pairs, None if sgd is None else (sgd.lr, sgd.weight_decay))

    @functools.cached_property
    def _layers(self) -> list[str] | None:
        """The model's Linear layers in chain order, if it is a Linear-ReLU chain."""
        return linear_chain(self.template())

    def _loss(
        self, names: list[str], params: list[Tensor], x: Tensor, y: Tensor, mask: Tensor
    ) -> Tensor:
        """One node's mean loss over the real (unmasked) examples of its batch."""
        outputs = functional_call(self.template(), dict(zip(names, params, strict=True)), (x,))
        losses = _per_example(self.client.loss_fn(outputs, y), len(y))
        return (losses * mask).sum() / mask.sum()


class _Plan:
    """Which rows each batched call of a chunk trains on.

    Nodes are sorted by their number of steps (ties: by last-batch size), so the nodes still
    training at step *t* are a prefix of the stack; each step's prefix is cut into runs
    (``_segments``), and a run's rows are gathered with one ``index_select``.
    """

    def __init__(
        self, nodes: list[tuple[Tensor, Tensor, int]], batch_size: int, epochs: int
    ) -> None:
        steps = [epochs * math.ceil(len(y) / batch_size) for _, y, _ in nodes]
        last = [(len(y) - 1) % batch_size for _, y, _ in nodes]  # rows in a last batch, minus 1
        order = sorted(range(len(nodes)), key=lambda i: (-steps[i], -last[i]))
        self.places = sorted(range(len(nodes)), key=order.__getitem__)
        """Each node's place in the stack, in the order of ``nodes``."""
        self.trained = sum(1 for s in steps if s)
        """How many nodes take a step: the others (no data) are the stack's tail."""
        self.batches, self.masks = _batch_plan([nodes[i] for i in order], batch_size, epochs)
        self.x_all = torch.cat([nodes[i][0] for i in order])
        self.y_all = torch.cat([nodes[i][1] for i in order])
        device = self.x_all.device
        self.batches, self.masks = self.batches.to(device), self.masks.to(device)
        widths = self.masks.sum(-1).to(torch.long).tolist()
        self.runs = [
            (t, a, b, width)
            for t in range(len(widths))
            for a, b, width in _segments(widths[t][: sum(1 for s in steps if s > t)], batch_size)
        ]

    def calls(self) -> Iterator[tuple[int, int, int, Tensor, Tensor, Tensor]]:
        """Per run: its step, its nodes ``[a, b)``, and their rows ``x, y`` and real-row mask."""
        for t, a, b, width in self.runs:
            rows = self.batches[t, a:b, :width].reshape(-1)
            x = self.x_all.index_select(0, rows).view(b - a, width, *self.x_all.shape[1:])
            y = self.y_all.index_select(0, rows).view(b - a, width, *self.y_all.shape[1:])
            yield t, a, b, x, y, self.masks[t, a:b, :width]


def _segments(widths: list[int], batch_size: int) -> list[tuple[int, int, int]]:
    """Cut the active nodes ``[0, len(widths))`` into runs ``(start, end, width)``.

    A run pads every node's batch to its widest; a cut costs a call. Runs are split in two
    where that saves more than a quarter of a batch of padded rows (about a call's overhead
    on W2), up to sixteen runs.
    """
    if not widths:
        return []
    runs = [(0, len(widths))]
    for _ in range(4):
        finer: list[tuple[int, int]] = []
        for a, b in runs:
            finer.extend(_best_cut(widths, a, b, batch_size))
        runs = finer
    return [(a, b, max(widths[a:b])) for a, b in runs]


def _best_cut(widths: list[int], a: int, b: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(a, b)]``, or its two halves at the cut that pads the fewest rows, if worth a call."""
    tail = widths[a:b]
    for i in range(len(tail) - 2, -1, -1):  # tail[i]: the widest of widths[a + i : b]
        tail[i] = max(tail[i], tail[i + 1])
    best, cut, head = (b - a) * tail[0] - batch_size // 4, b, 0
    for i in range(a + 1, b):
        head = max(head, widths[i - 1])
        cost = (i - a) * head + (b - i) * tail[i - a]
        if cost < best:
            best, cut = cost, i
    return [(a, b)] if cut == b else [(a, cut), (cut, b)]


def _batch_plan(
    nodes: list[tuple[Tensor, Tensor, int]], batch_size: int, epochs: int
) -> tuple[Tensor, Tensor]:
    """Rows into the concatenated data, ``(steps, nodes, batch)``, and the mask of real rows.

    Each node shuffles with its own generator, one ``randperm`` per epoch, as it would alone;
    only the last batch of an epoch is short, and its padding points at row 0, masked out.
    """
    per_node: list[Tensor] = []
    offset = 0
    for _, y, seed in nodes:
        n = len(y)
        generator = torch.Generator().manual_seed(seed)
        per_epoch = math.ceil(n / batch_size)
        padded = torch.full((epochs if n else 0, per_epoch * batch_size), -1, dtype=torch.long)
        for epoch in range(len(padded)):
            padded[epoch, :n] = torch.randperm(n, generator=generator) + offset
        per_node.append(padded.view(-1, batch_size))
        offset += n
    most = max(len(p) for p in per_node)
    rows = torch.full((most, len(nodes), batch_size), -1, dtype=torch.long)
    for i, plan in enumerate(per_node):
        rows[: len(plan), i] = plan
    mask = rows >= 0
    return rows.clamp(min=0), mask.to(torch.get_default_dtype())


@dataclass(frozen=True)
class _Node:
    """A task ready to train: its index in the chunk, its data and its shuffling seed."""

    index: int
    task: Task
    x: Tensor
    y: Tensor
    seed: int


def _node_device(context: Context) -> torch.device:
    """The device ``context.node_config["device"]`` names (default cpu), if torch can use it."""
    name = str(context.node_config.get(DEVICE_KEY, CPU))
    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except Exception as err:  # a malformed name, or no such device here (CUDA not built, ...)
        raise AppError(
            f"node_config device {name!r} is not usable here ({type(err).__name__}: {err}); "
            "give the node a device this machine has, e.g. 'cpu'"
        ) from None
    return device


def _number_settings(optimizer: Optimizer) -> list[str]:
    """The optimizer's settings a round's config may set: its number fields, if a dataclass."""
    if not dataclasses.is_dataclass(optimizer):
        return []
    return [
        f.name
        for f in dataclasses.fields(optimizer)
        if isinstance(getattr(optimizer, f.name), int | float)
        and not isinstance(getattr(optimizer, f.name), bool)
    ]


def _per_example(losses: Tensor, rows: int) -> Tensor:
    """``losses`` if it holds one loss per row of the batch, else a clear error."""
    if tuple(losses.shape) != (rows,):
        raise AppError(
            f"a VectorizedClient's loss_fn must return one loss per example, shape ({rows},), "
            f"got shape {tuple(losses.shape)}: use reduction='none'"
        )
    return losses


def _reply(message: Message, arrays: ArrayRecord, num_examples: int) -> Message:
    metrics = MetricRecord({"num-examples": num_examples})
    return message.reply(RecordDict({"arrays": arrays, "metrics": metrics}))


def _error(index: int, task: Task, err: Exception) -> TaskResult:
    """The error reply a ClientApp would give for ``err`` raised in its handler."""
    reason = f"{type(err).__name__}: {err}"
    return TaskResult(index, task.message.reply_error(ErrorCode.CLIENT_APP_RAISED, reason))


def _describe(value: object) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}: ({', '.join(type(v).__name__ for v in value)})"
    return type(value).__name__
