"""gRPC's errors as pollinate's: the one place where a call's status becomes a PollinateError.

Callers of the link (the Control client, a node) wrap their calls in ``rpc_errors``, so a
user sees one line that names the problem and the link, never a ``grpc.RpcError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from ..errors import AuthError, ConfigError, Forbidden, NotFound, PollinateError, WaitTimeout

__all__ = ["as_pollinate_error", "rpc_errors", "status_of"]

_BY_STATUS: dict[grpc.StatusCode, type[PollinateError]] = {
    grpc.StatusCode.UNAUTHENTICATED: AuthError,
    grpc.StatusCode.PERMISSION_DENIED: Forbidden,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.DEADLINE_EXCEEDED: WaitTimeout,
}
"""Statuses that say what kind of trouble it is; any other is a ConfigError."""


def status_of(err: grpc.RpcError) -> tuple[grpc.StatusCode | None, str]:
    """The call's status code (None if gRPC gave none) and its details."""
    if isinstance(err, grpc.Call):
        return err.code(), err.details() or str(err)
    return None, str(err)


def as_pollinate_error(err: grpc.RpcError, address: str, whom: str = "") -> PollinateError:
    """``err`` as the PollinateError that says what went wrong with the link at ``address``.

    ``whom`` names who was refused, in the message (" this node").
    """
    code, details = status_of(err)
    if code == grpc.StatusCode.UNAVAILABLE:
        return ConfigError(
            f"no link answers at {address} ({details}): check the address, that "
            "`pollinate link` runs there, and TLS (a root certificate for a TLS link, "
            "insecure for a plain one; a link with --mtls also wants an operator "
            "certificate, --cert and --key, that its CA signed and did not revoke)"
        )
    kind = _BY_STATUS.get(code, ConfigError) if code is not None else ConfigError
    return kind(f"the link at {address} refused{whom}: {details}")


@contextlib.contextmanager
def rpc_errors(address: str) -> Iterator[None]:
    """Turn a ``grpc.RpcError`` raised inside into ``as_pollinate_error``'s error."""
    try:
        yield
    except grpc.RpcError as err:
        raise as_pollinate_error(err, address) from None
