import io
import logging

from rich.console import Console

from pollinate.cli._progress import cli_logging


def test_cli_logging_shows_warnings_plainly_and_restores_the_logger():
    logger = logging.getLogger("pollinate")
    before = (list(logger.handlers), logger.level, logger.propagate)
    out = io.StringIO()
    with cli_logging(Console(file=out), verbose=False):
        logging.getLogger("pollinate.strategy").warning("round 2 train: set aside node 3: x")
        logging.getLogger("pollinate.strategy").info("hidden")
    assert out.getvalue() == "warning: round 2 train: set aside node 3: x\n"
    assert (list(logger.handlers), logger.level, logger.propagate) == before
