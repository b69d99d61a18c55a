"""Every error pollinate raises on purpose, under one root.

The hierarchy::

    PollinateError                 anything pollinate raises on purpose
    ├── ConfigError                a bad config key, value or app layout: the user's to fix
    ├── RecordError (TypeError)    a value of the wrong type or shape put into a record
    ├── WireError (ValueError)     bytes that are not a valid encoded message
    ├── AppError                   a ClientApp/ServerApp that cannot be loaded or dispatched
    ├── AuthError                  a request whose signature, freshness or origin is not trusted
    ├── Forbidden (PermissionError) a caller known, but not allowed this call (a node's on Control)
    ├── RoundError                 a round that ended with too few good replies
    ├── RunStopped                 a deployed run stopped by an operator, or by its link
    ├── NotFound (LookupError)     a run (or other named thing) that is not there
    ├── WaitTimeout (TimeoutError) a wait for a run or a node that ran out of time
    └── StorageError (OSError)     a file or the link's database that could not be written

Each message names the problem and, where there is one, the fix.
"""

from __future__ import annotations

import os

__all__ = [
    "AppError",
    "AuthError",
    "ConfigError",
    "Forbidden",
    "NotFound",
    "PollinateError",
    "RecordError",
    "RoundError",
    "RunStopped",
    "StorageError",
    "WaitTimeout",
    "WireError",
]


class PollinateError(Exception):
    """The root of every error pollinate raises on purpose."""


class ConfigError(PollinateError):
    """A configuration key, value or app layout the user has to fix."""


class RecordError(PollinateError, TypeError):
    """A value that a record cannot hold: the message names the key and the accepted types."""


class WireError(PollinateError, ValueError):
    """Bytes that do not decode to a valid message (truncated, corrupt or hostile)."""


class AppError(PollinateError):
    """A ClientApp or ServerApp that cannot be imported, found or dispatched to."""


class AuthError(PollinateError):
    """A request whose signature, freshness or origin cannot be trusted; the link refuses it."""


class Forbidden(PollinateError, PermissionError):
    """A caller the link knows, but not for this call: a node's certificate on Control, say."""


class RoundError(PollinateError):
    """A round that could not go on: too few nodes, or too few valid replies."""


class RunStopped(PollinateError):
    """A run an operator stopped (``pollinate stop``), or whose link is shutting down."""


class NotFound(PollinateError, LookupError):
    """A run (or other named thing) asked for that is not there; the message says where to look."""


class WaitTimeout(PollinateError, TimeoutError):
    """A wait (for a run to end, for nodes to connect) that ran out of time."""


class StorageError(PollinateError, OSError):
    """A file or the link's database that could not be written (a full disk, say).

    An OSError too, with the OS's ``errno``; its message says what failed and where, e.g.
    ``no space left on device writing runs/a/checkpoints/round-0003.npz``.
    """

    def __str__(self) -> str:
        reason = self.strerror or "cannot write"
        return f"{reason[:1].lower()}{reason[1:]} writing {self.filename}"

    @classmethod
    def writing(cls, path: str | os.PathLike[str], err: OSError) -> StorageError:
        """The error ``err`` that writing ``path`` raised, as a StorageError naming ``path``."""
        if isinstance(err, StorageError):
            return err
        return cls(err.errno, err.strerror or str(err), os.fspath(path))
