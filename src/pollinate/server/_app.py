"""ServerApp: the code that drives a run, given a Grid and a Context."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from ..context import Context
from ..errors import AppError
from ._grid import Grid
from ._history import Result

__all__ = ["ServerApp", "ServerMain"]

ServerMain: TypeAlias = Callable[[Grid, Context], "Result | None"]


class ServerApp:
    """The server side of an app: one ``main(grid, context)`` function.

    ::

        app = ServerApp()

        @app.main()
        def main(grid: Grid, context: Context) -> Result:
            return FedAvg().start(grid, initial_arrays, num_rounds=3)
    """

    def __init__(self) -> None:
        self._main: ServerMain | None = None

    def main(self) -> Callable[[ServerMain], ServerMain]:
        """Register the function that drives the run."""

        def register(fn: ServerMain) -> ServerMain:
            if self._main is not None:
                raise AppError("ServerApp already has a main function")
            self._main = fn
            return fn

        return register

    def __call__(self, grid: Grid, context: Context) -> Result | None:
        """Run the registered main function."""
        if self._main is None:
            raise AppError("ServerApp has no main function: decorate one with @app.main()")
        return self._main(grid, context)
