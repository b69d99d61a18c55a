"""The classic style: a strategy and a number of rounds become a ServerApp."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..context import Context
from ..errors import ConfigError, RoundError
from ..message import Message
from ..records import ArrayRecord, ConfigRecord, RecordDict
from ..server import Grid, Result, ServerApp

if TYPE_CHECKING:
    from ._base import EvaluateFn, Strategy

__all__ = ["one_server_app", "server_app_for"]

log = logging.getLogger("pollinate.strategy")


def server_app_for(
    strategy: Strategy,
    num_rounds: int,
    initial_arrays: ArrayRecord | None = None,
    evaluate_fn: EvaluateFn | None = None,
) -> ServerApp:
    """A ServerApp that runs ``strategy`` for ``num_rounds`` (initial arrays asked of a node)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> Result:
        arrays = initial_arrays if initial_arrays is not None else _initial_arrays(grid)
        return strategy.start(grid, arrays, num_rounds=num_rounds, evaluate_fn=evaluate_fn)

    return app


def _initial_arrays(grid: Grid) -> ArrayRecord:
    """Ask one node for its model's weights, as the classic API does without initial ones."""
    node_id = min(grid.node_ids())
    message = Message.create(
        RecordDict({"config": ConfigRecord()}), node_id, "query.get-parameters"
    )
    (reply,) = grid.send_and_receive([message])
    arrays = reply.content.get("arrays")
    if not isinstance(arrays, ArrayRecord):
        reason = reply.error.reason if reply.error else "its reply has no 'arrays'"
        raise RoundError(f"could not get initial parameters from node {node_id}: {reason}")
    log.info("initial parameters from node %d", node_id)
    return arrays


def one_server_app(
    server_app: ServerApp | None,
    strategy: Strategy | None,
    num_rounds: int | None,
    initial_arrays: ArrayRecord | None,
    evaluate_fn: EvaluateFn | None,
) -> ServerApp:
    """The ServerApp given, or one made from a strategy and num_rounds (the classic style)."""
    if server_app is not None:
        classic = (strategy, num_rounds, initial_arrays, evaluate_fn)
        if any(value is not None for value in classic):
            raise ConfigError(
                "give either server_app, or strategy and num_rounds (with initial_arrays and "
                "evaluate_fn), not both"
            )
        return server_app
    if strategy is None or num_rounds is None:
        raise ConfigError("give a server_app, or a strategy and num_rounds")
    return strategy.as_server_app(num_rounds, initial_arrays, evaluate_fn)
