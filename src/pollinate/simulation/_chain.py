"""Hand-batched steps for models that are a chain of Linear layers and ReLUs (W2's kind).

``vmap`` of ``grad`` trains any model, but it writes every node's weight gradient into fresh
memory and the optimizer reads it back in another pass over the stack. For a model whose
forward is ``Linear (ReLU Linear)*`` with the default cross-entropy, the gradients are a few
batched matrix products written out here; with plain SGD each weight's update is added to
the stack by the product itself (``baddbmm_``), so the stack is read and written once per
step. Any other optimizer gets the gradients and steps as it does after ``vmap``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ChainSteps", "linear_chain"]

State = dict[str, list[Tensor]]
_RELUS = (torch.relu, nn.functional.relu)


def linear_chain(model: nn.Module) -> list[str] | None:
    """The names of ``model``'s Linear layers in the order its forward chains them, or None.

    None unless the traced forward is exactly ``Linear (ReLU Linear)*`` on one input, every
    Linear has a bias, and the Linears hold all of the model's parameters.
    """
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # control flow or calls tracing cannot follow: the general path runs it
        return None
    modules = dict(model.named_modules())
    kinds: list[str] = []
    layers: list[str] = []
    previous = None
    for node in graph.nodes:
        if node.op == "placeholder":
            if previous is not None:
                return None
            previous = node
            continue
        if tuple(node.args) != (previous,) or set(node.kwargs) - {"inplace"}:
            return None
        if node.op == "output":
            break
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, nn.Linear) and module.bias is not None:
            kinds.append("linear")
            layers.append(str(node.target))
        elif (
            isinstance(module, nn.ReLU)
            or (node.op == "call_function" and node.target in _RELUS)
            or (node.op == "call_method" and node.target == "relu")
        ):
            kinds.append("relu")
        else:
            return None
        previous = node
    expected = ["linear"] + ["relu", "linear"] * (len(layers) - 1)
    owned = {f"{layer}.{part}" for layer in layers for part in ("weight", "bias")}
    named = {name for name, _ in model.named_parameters()}
    if kinds != expected or len(set(layers)) != len(layers) or owned != named:
        return None
    return layers


class ChainSteps:
    """One training step of a Linear-ReLU chain for a run of stacked nodes.

    ``layers``: each Linear's (weight, bias) positions in the parameter list, in chain order;
    ``sgd``: ``(lr, weight_decay)`` to fuse a plain SGD update into the products, else None.
    """

    def __init__(self, layers: list[tuple[int, int]], sgd: tuple[float, float] | None) -> None:
        self.layers = layers
        self.sgd = sgd

    def gradients_or_update(
        self,
        first: bool,
        shared: list[Tensor],
        live: list[Tensor],
        x: Tensor,
        y: Tensor,
        mask: Tensor,
    ) -> list[Tensor] | None:
        """Each node's mean-loss gradients, or None once a fused SGD step updated ``live``.

        ``first``: the nodes start from ``shared`` (unstacked), and ``live`` is not yet set.
        """
        weights = shared if first else live
        inputs: list[Tensor] = []
        out = x
        for k, (w, b) in enumerate(self.layers):
            inputs.append(out)
            out = _linear(first, out, weights[w], weights[b])
            if k < len(self.layers) - 1:
                out = out.clamp_min_(0)
        delta = _cross_entropy_grad(out, y, mask)
        grads: list[Tensor] = list(live)
        for k in reversed(range(len(self.layers))):
            w, b = self.layers[k]
            below = inputs[k]
            back = _backward(first, delta, weights[w]).mul_(below > 0) if k else None
            if self.sgd is None:
                grads[w] = torch.bmm(delta.transpose(1, 2), below)
                grads[b] = delta.sum(1)
            else:
                self._update(first, shared[w], shared[b], live[w], live[b], delta, below)
            if back is not None:
                delta = back
        return None if self.sgd is not None else grads

    def _update(
        self,
        first: bool,
        w0: Tensor,
        b0: Tensor,
        w: Tensor,
        b: Tensor,
        delta: Tensor,
        below: Tensor,
    ) -> None:
        """``w, b <- (1 - lr * decay) * (w, b) - lr * gradient``, in one pass for ``w``."""
        assert self.sgd is not None
        lr, decay = self.sgd
        keep = 1 - lr * decay
        if first:
            torch.baddbmm(
                w0.expand_as(w), delta.transpose(1, 2), below, beta=keep, alpha=-lr, out=w
            )
            b.copy_(b0.expand_as(b))
        else:
            w.baddbmm_(delta.transpose(1, 2), below, beta=keep, alpha=-lr)
        if decay:
            b.mul_(keep)
        b.sub_(delta.sum(1), alpha=lr)


def _linear(first: bool, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``x @ weight.T + bias`` per node; at the first step one product for every node."""
    if first:
        rows = torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight.t())
        return rows.view(*x.shape[:2], -1)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _backward(first: bool, delta: Tensor, weight: Tensor) -> Tensor:
    """The gradient reaching a Linear's input: ``delta @ weight`` per node."""
    if first:
        return torch.mm(delta.reshape(-1, delta.shape[-1]), weight).view(*delta.shape[:2], -1)
    return torch.bmm(delta, weight)


def _cross_entropy_grad(logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """d(mean cross-entropy over a node's real rows)/d(logits): ``(softmax - onehot) / rows``."""
    scale = (mask / mask.sum(1, keepdim=True)).unsqueeze(-1)
    grad = torch.softmax(logits, -1).mul_(scale)
    return grad.scatter_add_(-1, y.unsqueeze(-1), scale.neg())
