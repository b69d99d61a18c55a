"""Flower's ``start_client`` / ``start_numpy_client`` on ``pollinate.start_client``.

Flower's default is kept: without ``root_certificates`` the client talks plain text, and
says so once (``root_certificates=`` is the secure alternative). Certificates given as
bytes are written to a private temporary folder for pollinate's TLS, removed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .... import client as pollinate_client
from ....errors import ConfigError
from ..common._files import private_folder
from ..common.logger import logger, plain_text_said_once, warn_once
from ._adapter import FlowerClientFn, as_pollinate_client, flower_client_app
from .client import Client
from .numpy_client import NumPyClient

__all__ = ["start_client", "start_numpy_client"]

GRPC_MAX_MESSAGE_LENGTH = 536_870_912


def start_client(
    *,
    server_address: str,
    client_fn: Callable[..., Any] | None = None,
    client: Client | None = None,
    grpc_max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
    root_certificates: bytes | str | None = None,
    insecure: bool | None = None,
    transport: str | None = None,
    authentication_keys: Any = None,
    max_retries: int | None = None,
    max_wait_time: float | None = None,
) -> None:
    """Connect to the server at ``server_address`` and answer it until it says goodbye.

    Give ``client_fn`` (``client_fn(context)`` or legacy ``client_fn(cid)``) or ``client``.
    ``root_certificates`` (bytes, or a path) is the CA certificate for TLS; without it the
    link is plain text, as in Flower. ``max_wait_time`` bounds the reconnection attempts
    (None: retry for ever). ``grpc_max_message_length``, ``transport`` and ``max_retries``
    are accepted and ignored: pollinate streams large messages in chunks over its own gRPC.
    """
    if authentication_keys is not None:
        raise ConfigError(
            "authentication_keys is not supported: pollinate signs with Ed25519 keys, "
            "pollinate.start_client(..., key=...) (pollinate certs --signing-keys)"
        )
    _ignored(grpc_max_message_length=grpc_max_message_length != GRPC_MAX_MESSAGE_LENGTH)
    _ignored(transport=transport is not None, max_retries=max_retries is not None)
    make = flower_client_app(_client_maker(client_fn, client))
    from ....deploy import start_client as pollinate_start_client

    if insecure is None:
        insecure = root_certificates is None
    if insecure:
        if root_certificates is not None:
            raise ConfigError("give root_certificates for TLS, or insecure=True, not both")
        logger.warning(
            "this client talks plain text to %s, as Flower does without certificates: it "
            "cannot tell the server from an impostor, and anyone on the network path can read "
            "its replies; give root_certificates=<CA certificate> (pollinate certs makes one)",
            server_address,
        )
        with plain_text_said_once():
            pollinate_start_client(server_address, make, insecure=True, give_up_s=max_wait_time)
        return
    if root_certificates is None:
        raise ConfigError("insecure=False needs root_certificates (the CA certificate) for TLS")
    if isinstance(root_certificates, str):
        pollinate_start_client(
            server_address, make, root_cert=Path(root_certificates), give_up_s=max_wait_time
        )
        return
    with private_folder({"ca.pem": root_certificates}) as folder:
        pollinate_start_client(
            server_address, make, root_cert=folder / "ca.pem", give_up_s=max_wait_time
        )


def start_numpy_client(
    *,
    server_address: str,
    client: NumPyClient,
    grpc_max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
    root_certificates: bytes | str | None = None,
    insecure: bool | None = None,
    transport: str | None = None,
) -> None:
    """``start_client`` for a NumPyClient (Flower's deprecated spelling, still accepted)."""
    if not isinstance(client, NumPyClient):
        raise ConfigError(
            f"start_numpy_client takes a NumPyClient, got {type(client).__name__}; "
            "for a Client use start_client(client=...)"
        )
    start_client(
        server_address=server_address,
        client=client.to_client(),
        grpc_max_message_length=grpc_max_message_length,
        root_certificates=root_certificates,
        insecure=insecure,
        transport=transport,
    )


class _OneClient:
    """A client_fn that returns the one client given to ``start_client(client=...)``."""

    __slots__ = ("client",)

    def __init__(self, client: Client | NumPyClient) -> None:
        self.client = client

    def __call__(self, context: Any) -> pollinate_client.NumPyClient:
        return as_pollinate_client(self.client, context)


def _client_maker(
    client_fn: Callable[..., Any] | None, client: Client | None
) -> Callable[[Any], pollinate_client.NumPyClient]:
    if (client_fn is None) == (client is None):
        raise ConfigError("give start_client exactly one of client_fn or client")
    if client is not None:
        if not isinstance(client, (Client, NumPyClient)):
            raise ConfigError(
                f"client must be a Flower Client (NumPyClient(...).to_client()), got "
                f"{type(client).__name__}"
            )
        return _OneClient(client)
    assert client_fn is not None
    return FlowerClientFn(client_fn)


def _ignored(**given: bool) -> None:
    """Say once, for each Flower argument given that pollinate has no use for, that it is unused."""
    for name, was_given in given.items():
        if was_given:
            warn_once(
                f"ignored-{name}",
                f"{name} is ignored: pollinate streams large messages in chunks over its own "
                "gRPC link and retries with backoff",
            )
