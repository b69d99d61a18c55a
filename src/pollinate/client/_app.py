"""ClientApp: the code that runs on a node, as handlers keyed by message type."""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import TypeAlias

from ..context import Context
from ..errors import AppError, PollinateError
from ..message import ErrorCode, Message, MessageType
from ._handler import Handler
from ._numpy_client import ClientFn, numpy_client_handlers

__all__ = ["ClientApp", "Handler", "Lifespan", "Mod", "Warmup"]

log = logging.getLogger("pollinate.client")

Mod: TypeAlias = Callable[[Message, Context, Handler], Message]
"""Middleware around a handler: ``(message, context, call_next) -> reply``."""

Lifespan: TypeAlias = Callable[[Context], Iterator[None]]
"""A generator function: set-up before its ``yield``, tear-down after."""

Warmup: TypeAlias = Callable[[Context], None]
"""Run once per process before its first message: load what every node there shares."""


class ClientApp:
    """The node side of an app: handlers for train, evaluate and query messages.

    Register handlers with decorators, optionally for named variants::

        app = ClientApp()

        @app.train()
        def train(msg: Message, context: Context) -> Message: ...

        @app.train("finetune")        # answers message_type "train.finetune"
        def finetune(msg: Message, context: Context) -> Message: ...

    ``mods`` wrap every handler, outermost first. An exception in a handler or mod becomes an
    error reply to the server; it never crashes the node.
    """

    def __init__(self, client_fn: ClientFn | None = None, mods: Sequence[Mod] = ()) -> None:
        self._handlers: dict[str, Handler] = {}
        self._mods = list(mods)
        self._lifespan: Lifespan | None = None
        self._warmup: Warmup | None = None
        if client_fn is not None:
            self._handlers.update(numpy_client_handlers(client_fn))

    def train(self, name: str = "") -> Callable[[Handler], Handler]:
        """Register a handler for ``train`` (or ``train.<name>``) messages."""
        return self._register(MessageType.TRAIN, name)

    def evaluate(self, name: str = "") -> Callable[[Handler], Handler]:
        """Register a handler for ``evaluate`` (or ``evaluate.<name>``) messages."""
        return self._register(MessageType.EVALUATE, name)

    def query(self, name: str = "") -> Callable[[Handler], Handler]:
        """Register a handler for ``query`` (or ``query.<name>``) messages."""
        return self._register(MessageType.QUERY, name)

    def lifespan(self) -> Callable[[Lifespan], Lifespan]:
        """Register a generator run around each message: set-up, ``yield``, tear-down."""

        def register(fn: Lifespan) -> Lifespan:
            self._lifespan = fn
            return fn

        return register

    def warmup(self) -> Callable[[Warmup], Warmup]:
        """Register a function a simulation runs once per process before round 1.

        Each process that will run nodes (the inline backend's own, every worker of the
        process backend) calls it with a context holding the run config and, in
        ``node_config``, ``num-partitions`` (no ``partition-id``: it is no one node). Load
        what the nodes share there (a dataset split, say) so that round 1 does not pay for
        it. A handler must not rely on it having run: a deployed node never calls it.
        """

        def register(fn: Warmup) -> Warmup:
            self._warmup = fn
            return fn

        return register

    def warm_up(self, context: Context) -> None:
        """Run the registered warm-up, if any; AppError if it raises (pollinate's errors pass).

        The error names the warm-up and where it raised: a run cannot start without it.
        """
        if self._warmup is None:
            return
        try:
            self._warmup(context)
        except PollinateError:
            raise
        except Exception as err:
            raise AppError(f"the ClientApp's warm-up raised {_describe(err)}") from err

    @property
    def message_types(self) -> list[str]:
        """The message types this app answers."""
        return sorted(self._handlers)

    def _register(self, kind: str, name: str) -> Callable[[Handler], Handler]:
        if "." in name:
            raise AppError(f"handler name {name!r} must not contain '.'")
        message_type = f"{kind}.{name}" if name else kind

        def register(fn: Handler) -> Handler:
            if message_type in self._handlers:
                raise AppError(f"ClientApp already has a handler for {message_type!r}")
            self._handlers[message_type] = fn
            return fn

        return register

    def __call__(self, message: Message, context: Context) -> Message:
        """Answer ``message``: dispatch to its handler through the mods; errors become replies."""
        handler = self._handlers.get(message.metadata.message_type)
        if handler is None:
            known = ", ".join(self.message_types) or "none"
            return message.reply_error(
                ErrorCode.NO_HANDLER,
                f"ClientApp has no handler for message type {message.metadata.message_type!r} "
                f"(it handles: {known})",
            )
        try:
            with self._lifespan_of(context):
                reply = _wrap(handler, self._mods)(message, context)
        except Exception as err:  # a user's bug must reach the server, not kill the node
            log.debug("handler for %s raised", message.metadata.message_type, exc_info=True)
            return message.reply_error(ErrorCode.CLIENT_APP_RAISED, _describe(err))
        if not isinstance(reply, Message):
            return message.reply_error(
                ErrorCode.CLIENT_APP_RAISED,
                f"handler for {message.metadata.message_type!r} returned "
                f"{type(reply).__name__}, expected a Message (use msg.reply(content))",
            )
        return reply

    def _lifespan_of(self, context: Context) -> contextlib.AbstractContextManager[None]:
        if self._lifespan is None:
            return contextlib.nullcontext()
        return _Lifespan(self._lifespan(context))


class _Lifespan:
    """Runs a lifespan generator's set-up, then its tear-down even if the handler raised.

    The handler's exception is not thrown into the generator, so a lifespan needs no
    try/finally of its own to release what it set up.
    """

    def __init__(self, steps: Iterator[None]) -> None:
        self.steps = steps

    def __enter__(self) -> None:
        next(self.steps)

    def __exit__(self, *exc_info: object) -> None:
        for _ in self.steps:
            raise AppError("a lifespan function must yield exactly once")


def _wrap(handler: Handler, mods: Sequence[Mod]) -> Handler:
    """Fold the mods around the handler so that ``mods[0]`` runs first."""
    wrapped = handler
    for mod in reversed(mods):
        wrapped = _bind(mod, wrapped)
    return wrapped


def _bind(mod: Mod, call_next: Handler) -> Handler:
    def handler(message: Message, context: Context) -> Message:
        return mod(message, context, call_next)

    return handler


def _describe(err: BaseException) -> str:
    """One line for the error plus where in the user's code it was raised."""
    frames = traceback.extract_tb(err.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(err).__name__}: {err}{where}"
