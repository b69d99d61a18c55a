"""Flower's ServerApp and Grid on pollinate's: ``main(grid, context)`` with Flower's types."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeAlias

from ....context import Context as CoreContext
from ....errors import AppError, ConfigError
from ....records import ArrayRecord as CoreArrayRecord
from ....records import RecordDict as CoreRecordDict
from ....server import Grid as CoreGrid
from ....server import Result as CoreResult
from ....server import ServerApp as CoreServerApp
from ....strategy import Strategy as CoreStrategy
from .._records import Context, Message, core_message, flower_context, flower_message

__all__ = ["Grid", "ServerApp", "core_grid"]

log = logging.getLogger("pollinate.compat.flwr")

FlowerMainFn: TypeAlias = Callable[["Grid", Context], Any]
FlowerLifespanFn: TypeAlias = Callable[[Context], Iterator[None]]


class Grid:
    """Flower's ``Grid``: pollinate's Grid behind Flower's method names.

    ``get_node_ids()``, ``send_and_receive(messages, timeout=...)``, ``push_messages`` /
    ``pull_messages`` and ``create_message`` take and give Flower Messages; the replies are
    views of pollinate's, so nothing is copied.
    """

    __slots__ = ("_core", "ran_strategy")

    def __init__(self, grid: CoreGrid) -> None:
        self._core = grid
        self.ran_strategy = False
        """Whether a strategy's ``start`` ran on this grid (its history is the run's)."""

    @property
    def run_id(self) -> int:
        """The id of the run this grid serves."""
        return self._core.run_id

    def get_node_ids(self) -> list[int]:
        """The ids of the nodes available now."""
        return list(self._core.node_ids())

    def create_message(
        self,
        content: CoreRecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """A message for ``dst_node_id`` (the grid fills in the run id when it is sent)."""
        return Message(content, dst_node_id, message_type, group_id=group_id, ttl=ttl)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Send messages; returns their ids, for ``pull_messages``."""
        return self._core.send(core_message(m) for m in messages)

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        """The replies to ``message_ids`` (pollinate's grid waits for them all)."""
        return [flower_message(m) for m in self._core.receive(list(message_ids))]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        """Send messages and wait for every reply (or ``timeout`` seconds): one per message."""
        replies = self._core.send_and_receive((core_message(m) for m in messages), timeout)
        return [flower_message(m) for m in replies]


def core_grid(grid: Grid | CoreGrid) -> CoreGrid:
    """The pollinate Grid behind a Flower one (a pollinate Grid is returned as is)."""
    if isinstance(grid, Grid):
        return grid._core
    if isinstance(grid, CoreGrid):
        return grid
    raise ConfigError(f"expected the Grid that ServerApp.main received, got {type(grid).__name__}")


class ServerApp(CoreServerApp):
    """Flower's ``ServerApp``: ``@app.main()`` (1.25+) or ``ServerApp(server_fn=...)`` (1.x).

    ``main(grid, context)`` gets Flower's Grid and Context; it may return nothing, as
    Flower's does: the run's history is what ``strategy.start`` recorded. ``server_fn``
    returns ``ServerAppComponents(strategy=..., config=ServerConfig(num_rounds=...))`` from
    ``pollinate.compat.flwr.server``; ``ServerApp(config=..., strategy=...)`` is the same.
    """

    def __init__(
        self,
        server: object | None = None,
        config: object | None = None,
        strategy: object | None = None,
        client_manager: object | None = None,
        server_fn: Callable[[Context], Any] | None = None,
    ) -> None:
        super().__init__()
        if server is not None or client_manager is not None:
            raise ConfigError(
                "ServerApp(server=..., client_manager=...) is not supported: pollinate has one "
                "round loop (pollinate.Strategy.start); pass a strategy and a ServerConfig"
            )
        if server_fn is not None and (config is not None or strategy is not None):
            raise ConfigError("give ServerApp either server_fn, or config and strategy, not both")
        if server_fn is None and (config is not None or strategy is not None):
            server_fn = _FixedComponents(config, strategy)
        self._server_fn = server_fn
        self._flower_lifespan: FlowerLifespanFn | None = None

    def main(self) -> Callable[[FlowerMainFn], FlowerMainFn]:  # type: ignore[override]
        """Register ``main(grid, context)``, which gets Flower's Grid and Context."""
        if self._server_fn is not None:
            raise AppError("this ServerApp runs its server_fn: it takes no @app.main() as well")
        register = super().main()

        def decorator(fn: FlowerMainFn) -> FlowerMainFn:
            register(_FlowerMain(fn))
            return fn

        return decorator

    def lifespan(self) -> Callable[[FlowerLifespanFn], FlowerLifespanFn]:
        """Register a generator run around the whole run: set-up, ``yield``, tear-down."""

        def decorator(fn: FlowerLifespanFn) -> FlowerLifespanFn:
            self._flower_lifespan = fn
            return fn

        return decorator

    def __call__(self, grid: CoreGrid, context: CoreContext) -> CoreResult | None:
        """Run the registered main (or the server_fn's strategy) inside the lifespan."""
        with self._lifespan_of(context):
            if self._server_fn is not None:
                return _run_components(self._server_fn, grid, context)
            return super().__call__(grid, context)

    def _lifespan_of(self, context: CoreContext) -> contextlib.AbstractContextManager[None]:
        if self._flower_lifespan is None:
            return contextlib.nullcontext()
        return contextlib.contextmanager(self._flower_lifespan)(flower_context(context))


class _FlowerMain:
    """pollinate's ``main(grid, context)`` calling a Flower one with Flower's types."""

    __slots__ = ("fn",)

    def __init__(self, fn: FlowerMainFn) -> None:
        self.fn = fn

    def __call__(self, grid: CoreGrid, context: CoreContext) -> CoreResult | None:
        view = Grid(grid)
        returned = self.fn(view, flower_context(context))
        if isinstance(returned, CoreResult):
            return returned
        if view.ran_strategy:
            return None  # strategy.start reported its history to the run
        # A hand-written loop over grid.send_and_receive, as Flower allows: no rounds to keep.
        log.warning(
            "the ServerApp drove grid.send_and_receive itself (its own loop, or a "
            "Strategy.start override), not the strategy's start: pollinate records no "
            "rounds, metrics or final model for this run (what the app saves itself is "
            "kept); FedAvg's start(grid=grid, ...) has them recorded"
        )
        empty = CoreResult(CoreArrayRecord())
        grid.observer.on_result(empty)
        return empty


class _FixedComponents:
    """The ``server_fn`` of ``ServerApp(config=..., strategy=...)`` (Flower's older form)."""

    __slots__ = ("config", "strategy")

    def __init__(self, config: Any, strategy: Any) -> None:
        self.config = config
        self.strategy = strategy

    def __call__(self, context: Context) -> object:
        from ..server import ServerAppComponents

        return ServerAppComponents(config=self.config, strategy=self.strategy)


def _run_components(
    server_fn: Callable[[Context], Any], grid: CoreGrid, context: CoreContext
) -> CoreResult:
    """Run what ``server_fn`` returns: its strategy for ``config.num_rounds`` rounds."""
    from .. import server  # the classic API's strategies and components, loaded when used

    components = server_fn(flower_context(context))
    if not isinstance(components, server.ServerAppComponents):
        raise ConfigError(
            f"server_fn must return ServerAppComponents(strategy=..., config=...), got "
            f"{type(components).__name__}"
        )
    if components.server is not None or components.client_manager is not None:
        raise ConfigError(
            "ServerAppComponents(server=..., client_manager=...) is not supported: pollinate "
            "has one round loop; give a strategy and a ServerConfig"
        )
    strategy = components.strategy
    if strategy is None:
        strategy = server.strategy.FedAvg()  # Flower's default
    if not isinstance(strategy, CoreStrategy):
        raise ConfigError(
            f"ServerAppComponents' strategy must be a strategy from "
            f"pollinate.compat.flwr.server.strategy, got {type(strategy).__name__}"
        )
    config = components.config if components.config is not None else server.ServerConfig()
    result = strategy.start(grid, num_rounds=config.num_rounds, timeout_s=config.round_timeout)
    log.info("run finished:\n%s", server.history_from_result(result))
    return result
