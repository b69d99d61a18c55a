"""Flower's ``flwr.common.logger``: ``log(level, msg, *args)`` on pollinate's logger.

Records go to the ``pollinate.flwr`` logger, so they show wherever pollinate's own do. Its
INFO lines are shown as Flower shows them (an app's ``log(INFO, "...")`` is its progress
report): on stderr, unless a handler above already shows them (``pollinate run
--verbose``, the user's ``logging.basicConfig``), so that each is printed once.
``plain_text_said_once`` keeps pollinate's link and nodes from repeating a plain-text
warning the Flower call has given already (naming the secure alternative).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator

__all__ = [
    "FLOWER_LOGGER",
    "log",
    "logger",
    "plain_text_said_once",
    "update_console_handler",
    "warn_once",
]

logger = logging.getLogger("pollinate.flwr")
FLOWER_LOGGER = logger
log = logger.log


class _ShownIfUnshown(logging.Handler):
    """Prints records of INFO and above on stderr that no handler above would show.

    Flower shows its INFO lines by default; warnings are shown as Python's last resort
    would (which no longer runs, this logger having a handler).
    """

    def emit(self, record: logging.LogRecord) -> None:
        if not _shown_above(record):
            sys.stderr.write(self.format(record) + "\n")


def _shown_above(record: logging.LogRecord) -> bool:
    """Whether a handler of an ancestor the record propagates to takes its level."""
    current: logging.Logger | None = logger
    while current is not None and current.propagate:
        current = current.parent
        if current is not None and any(record.levelno >= h.level for h in current.handlers):
            return True
    return False


_console = _ShownIfUnshown()
logger.setLevel(logging.INFO)
logger.addHandler(_console)


def update_console_handler(
    level: int | str | None = None,
    timestamps: bool | None = None,
    colored: bool | None = None,
) -> None:
    """Flower's: the lowest level of the lines ``log`` prints on stderr (e.g. ``DEBUG``).

    ``timestamps`` and ``colored`` are accepted and have no effect: the lines are plain.
    """
    if level is not None:
        logger.setLevel(level)
        _console.setLevel(level)


_said: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Log ``message`` as a WARNING the first time ``key`` is seen in this process."""
    if key not in _said:
        _said.add(key)
        logger.warning(message)


class _PlainTextSaid(logging.Filter):
    """Drops pollinate's own plain-text warnings while a Flower call has said it once already."""

    def __init__(self) -> None:
        super().__init__()
        self.users = 0
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(PLAIN_TEXT_PREFIX)


PLAIN_TEXT_PREFIX = "plain text (--insecure)"
_PLAIN_TEXT_LOGGERS = ("pollinate.link", "pollinate.node")
_plain_text = _PlainTextSaid()


@contextlib.contextmanager
def plain_text_said_once() -> Iterator[None]:
    """While inside, pollinate's link and nodes do not repeat the plain-text warning."""
    with _plain_text.lock:
        if _plain_text.users == 0:
            for name in _PLAIN_TEXT_LOGGERS:
                logging.getLogger(name).addFilter(_plain_text)
        _plain_text.users += 1
    try:
        yield
    finally:
        with _plain_text.lock:
            _plain_text.users -= 1
            if _plain_text.users == 0:
                for name in _PLAIN_TEXT_LOGGERS:
                    logging.getLogger(name).removeFilter(_plain_text)
