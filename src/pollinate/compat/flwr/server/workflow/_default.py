"""Flower's ``DefaultWorkflow``: the classic strategy's rounds, on pollinate's round loop.

``DefaultWorkflow(fit_workflow=None)(grid, context)`` runs ``context.strategy.start(...)``
for ``context.config.num_rounds`` (what ``ServerApp(strategy=..., config=...)`` runs):
centralized evaluation before round 1 and after each round, fit, then federated
evaluation, as Flower's legacy workflow does; ``context.history`` gets the run's History.
With ``fit_workflow=SecAggPlusWorkflow(...)`` each fit exchange is pollinate's SecAgg+.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .....errors import ConfigError
from .....server import Grid as CoreGrid
from .....server import Result
from .....strategy import SecureAggregation
from .....strategy import Strategy as CoreStrategy
from ..._records import Context
from ..._words import in_flower_words
from .._legacy_context import LegacyContext
from ..history import History, history_from_result
from ._secagg import SecAggPlusWorkflow

if TYPE_CHECKING:
    from ...serverapp import Grid

__all__ = ["DefaultWorkflow"]

log = logging.getLogger("pollinate.compat.flwr")


class DefaultWorkflow:
    """Flower's legacy workflow: ``DefaultWorkflow(fit_workflow=None, evaluate_workflow=None)``.

    ``fit_workflow`` may be a ``SecAggPlusWorkflow`` or ``SecAggWorkflow`` (secure
    aggregation of each round's fit), or None (a plain fit). A workflow function of your
    own is not supported: pollinate's round loop runs the phases.
    """

    def __init__(
        self,
        fit_workflow: SecAggPlusWorkflow | None = None,
        evaluate_workflow: object | None = None,
    ) -> None:
        if fit_workflow is not None and not isinstance(fit_workflow, SecAggPlusWorkflow):
            raise ConfigError(
                f"DefaultWorkflow(fit_workflow=...) takes SecAggPlusWorkflow or SecAggWorkflow, "
                f"got {type(fit_workflow).__name__}: pollinate's round loop runs the fit "
                "itself; customize the strategy (configure_fit, aggregate_fit) instead"
            )
        if evaluate_workflow is not None:
            raise ConfigError(
                "DefaultWorkflow(evaluate_workflow=...) is not supported: pollinate's round "
                "loop runs the evaluation; customize configure_evaluate / aggregate_evaluate"
            )
        self.fit_workflow = fit_workflow
        self.evaluate_workflow = evaluate_workflow

    def __call__(self, grid: Grid | CoreGrid, context: Context) -> None:
        """Run the rounds; the run's losses and metrics go in ``context.history``."""
        if not isinstance(context, LegacyContext):
            raise ConfigError(
                f"DefaultWorkflow needs a LegacyContext, got {type(context).__name__}: "
                "context = LegacyContext(context=context, config=ServerConfig(num_rounds=...), "
                "strategy=strategy)"
            )
        from ...serverapp._app import Grid, core_grid  # the message API side's, when used

        strategy = context.strategy
        with in_flower_words():
            rounds = context.config.num_rounds
            fit = self.fit_workflow
            secure = None if fit is None else fit.for_strategy(strategy, rounds)
            result = _run(strategy, core_grid(grid), context, secure)
        if isinstance(grid, Grid):
            grid.ran_strategy = True  # the run's history is this result's
        _fill(context.history, history_from_result(result))
        log.info("run finished:\n%s", context.history)


def _run(
    strategy: CoreStrategy,
    grid: CoreGrid,
    context: LegacyContext,
    secure: SecureAggregation | None,
) -> Result:
    """``strategy.start`` on the grid, its train exchange ``secure``'s for this run only."""
    config = context.config
    if secure is None:
        return strategy.start(grid, num_rounds=config.num_rounds, timeout_s=config.round_timeout)
    held = strategy.secure_aggregation
    strategy.secure_aggregation = secure
    try:
        return strategy.start(grid, num_rounds=config.num_rounds, timeout_s=config.round_timeout)
    finally:
        strategy.secure_aggregation = held


def _fill(history: History, made: History) -> None:
    """Give the context's own History (the object Flower code holds) the run's series."""
    vars(history).update(vars(made))
