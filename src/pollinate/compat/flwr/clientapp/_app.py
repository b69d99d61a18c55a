"""Flower's ClientApp on pollinate's: handlers, mods and lifespans see Flower's types."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeAlias

from ....client import ClientApp as CoreClientApp
from ....context import Context as CoreContext
from ....message import Message as CoreMessage
from ....message import MessageType
from .._records import Context, Message, core_message, flower_context, flower_message

__all__ = ["ClientApp", "FlowerHandler", "FlowerMod"]

FlowerHandlerFn: TypeAlias = Callable[[Message, Context], Message]
FlowerModFn: TypeAlias = Callable[[Message, Context, FlowerHandlerFn], Message]
FlowerLifespanFn: TypeAlias = Callable[[Context], Iterator[None]]

DEFAULT_ACTION = "default"
"""Flower's name for a handler's unnamed variant: ``@app.train()`` answers ``"train"``."""


class ClientApp(CoreClientApp):
    """Flower's ``ClientApp``: ``@app.train()``, ``@app.evaluate()``, ``@app.query()``.

    Handlers take ``(Message, Context)`` as Flower's do and return
    ``Message(content, reply_to=msg)``; ``ClientApp(client_fn=...)`` (Flower 1.x) runs a
    ``NumPyClient`` or ``Client`` through ``pollinate.compat.flwr.client``.
    """

    def __init__(
        self,
        client_fn: Callable[..., Any] | None = None,
        mods: Sequence[FlowerModFn] | None = None,
    ) -> None:
        super().__init__(mods=[FlowerMod(mod) for mod in mods or ()])
        if client_fn is not None:  # Flower 1.x: a NumPyClient or Client made per message
            from ..client._adapter import client_fn_handlers, keep_text_metrics

            self._handlers.update(client_fn_handlers(client_fn))
            self._mods.append(keep_text_metrics)  # innermost, around the client's handlers

    def train(  # type: ignore[override]
        self, action: str = DEFAULT_ACTION, *, mods: Sequence[FlowerModFn] | None = None
    ) -> Callable[[FlowerHandlerFn], FlowerHandlerFn]:
        """Register a handler for ``train`` (or ``train.<action>``) messages."""
        return self._flower(MessageType.TRAIN, action, mods)

    def evaluate(  # type: ignore[override]
        self, action: str = DEFAULT_ACTION, *, mods: Sequence[FlowerModFn] | None = None
    ) -> Callable[[FlowerHandlerFn], FlowerHandlerFn]:
        """Register a handler for ``evaluate`` (or ``evaluate.<action>``) messages."""
        return self._flower(MessageType.EVALUATE, action, mods)

    def query(  # type: ignore[override]
        self, action: str = DEFAULT_ACTION, *, mods: Sequence[FlowerModFn] | None = None
    ) -> Callable[[FlowerHandlerFn], FlowerHandlerFn]:
        """Register a handler for ``query`` (or ``query.<action>``) messages."""
        return self._flower(MessageType.QUERY, action, mods)

    def lifespan(  # type: ignore[override]
        self,
    ) -> Callable[[FlowerLifespanFn], FlowerLifespanFn]:
        """Register a generator run around each message, given the Flower Context."""
        register = super().lifespan()

        def decorator(fn: FlowerLifespanFn) -> FlowerLifespanFn:
            register(_FlowerLifespan(fn))
            return fn

        return decorator

    def _flower(
        self, kind: str, action: str, mods: Sequence[FlowerModFn] | None
    ) -> Callable[[FlowerHandlerFn], FlowerHandlerFn]:
        register = self._register(kind, "" if action == DEFAULT_ACTION else action)

        def decorator(fn: FlowerHandlerFn) -> FlowerHandlerFn:
            register(FlowerHandler(fn, tuple(mods or ())))
            return fn

        return decorator


class FlowerHandler:
    """A pollinate handler that runs a Flower one (and its own mods) on Flower views.

    An object rather than a closure, so that the app can be shipped to worker processes.
    """

    __slots__ = ("fn", "mods")

    def __init__(self, fn: FlowerHandlerFn, mods: tuple[FlowerModFn, ...] = ()) -> None:
        self.fn = fn
        self.mods = mods

    def __call__(self, message: CoreMessage, context: CoreContext) -> CoreMessage:
        reply = self._step(0, flower_message(message), flower_context(context))
        return core_message(reply)

    def _step(self, index: int, message: Message, context: Context) -> Message:
        if index == len(self.mods):
            return self.fn(message, context)
        call_next = functools.partial(self._step, index + 1)
        return self.mods[index](message, context, call_next)


class FlowerMod:
    """A pollinate mod that runs a Flower mod: it sees Flower views, its ``call_next`` too."""

    __slots__ = ("mod",)

    def __init__(self, mod: FlowerModFn) -> None:
        self.mod = mod

    def __call__(
        self,
        message: CoreMessage,
        context: CoreContext,
        call_next: Callable[[CoreMessage, CoreContext], CoreMessage],
    ) -> CoreMessage:
        flower_next = functools.partial(_flower_next, call_next)
        reply = self.mod(flower_message(message), flower_context(context), flower_next)
        return core_message(reply)


def _flower_next(
    call_next: Callable[[CoreMessage, CoreContext], CoreMessage],
    message: Message,
    context: Context,
) -> Message:
    return flower_message(call_next(core_message(message), context))


class _FlowerLifespan:
    """A pollinate lifespan that hands a Flower lifespan function the Flower Context."""

    __slots__ = ("fn",)

    def __init__(self, fn: FlowerLifespanFn) -> None:
        self.fn = fn

    def __call__(self, context: CoreContext) -> Iterator[None]:
        return self.fn(flower_context(context))
