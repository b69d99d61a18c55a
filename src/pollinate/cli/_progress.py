"""The CLI's log lines: ``pollinate.*`` records on the console the run's view uses.

The view itself (``progress_view``) lives in ``pollinate.server._progress``, below the
simulation and deployment layers, so ``run_simulation`` and ``start_server`` show it too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from rich.console import Console

from ..server._progress import log_handler

__all__ = ["cli_logging"]


@contextlib.contextmanager
def cli_logging(console: Console, verbose: bool) -> Iterator[None]:
    """Show ``pollinate.*`` log records on ``console``: warnings, and INFO when verbose.

    The ``pollinate`` logger's handlers, level and propagation are restored on exit.
    """
    logger = logging.getLogger("pollinate")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    logger.handlers = [log_handler(console, logging.INFO if verbose else logging.WARNING)]
    logger.setLevel(logging.INFO)  # INFO reaches other handlers too (a deployed run's log)
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers, level, logger.propagate = saved
        logger.setLevel(level)
