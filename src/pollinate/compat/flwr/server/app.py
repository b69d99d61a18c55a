"""Flower's ``start_server`` on ``pollinate.start_server``: one run, its ``History`` back.

Flower's defaults are kept: without ``certificates`` the server talks plain text, and says
so once (``certificates=(ca, cert, key)`` is the secure alternative); certificates given as
bytes are written to a private temporary folder (0700) for pollinate's TLS and removed
afterwards. The run starts once ``min_available_clients`` nodes are connected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ....context import Context
from ....errors import ConfigError
from ....server import Grid, Result, ServerApp
from ....strategy import Strategy as CoreStrategy
from ..common._files import private_folder
from ..common.logger import logger, plain_text_said_once, warn_once
from .client_manager import WAIT_S
from .history import History, history_from_result
from .server_config import ServerConfig, server_config

__all__ = ["start_server", "strategy_server_app"]

DEFAULT_SERVER_ADDRESS = "[::]:8080"
GRPC_MAX_MESSAGE_LENGTH = 536_870_912


def start_server(
    *,
    server_address: str = DEFAULT_SERVER_ADDRESS,
    server: Any = None,
    config: ServerConfig | Mapping[str, Any] | None = None,
    strategy: CoreStrategy | None = None,
    client_manager: Any = None,
    grpc_max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
    certificates: tuple[bytes, bytes, bytes] | None = None,
) -> History:
    """Serve ``config.num_rounds`` rounds of ``strategy`` (default FedAvg) at ``server_address``.

    ``certificates`` is ``(ca_cert, server_cert, server_key)`` as bytes (PEM), as in Flower.
    ``grpc_max_message_length`` is accepted and ignored: pollinate streams large messages in
    chunks. A custom ``server`` or ``client_manager`` is not supported.
    """
    _refuse_custom(server, client_manager)
    if grpc_max_message_length != GRPC_MAX_MESSAGE_LENGTH:
        warn_once(
            "ignored-grpc_max_message_length",
            "grpc_max_message_length is ignored: pollinate streams large messages in chunks",
        )
    strategy = default_strategy(strategy)
    app = strategy_server_app(strategy, server_config(config))
    min_nodes = max(1, int(getattr(strategy, "min_available_clients", 1)))
    from ....deploy import start_server as pollinate_start_server

    if certificates is None:
        logger.warning(
            "%s talks plain text, as Flower does without certificates: anyone on the network "
            "path can read and change the models and metrics that travel; give "
            "certificates=(ca_cert, server_cert, server_key) (pollinate certs makes them) for TLS",
            server_address,
        )
        with plain_text_said_once():
            result = pollinate_start_server(
                server_address, server_app=app, insecure=True, min_nodes=min_nodes, wait_s=WAIT_S
            )
        return history_from_result(result)
    with private_folder(_certificate_files(certificates)) as folder:
        result = pollinate_start_server(
            server_address, server_app=app, certs=folder, min_nodes=min_nodes, wait_s=WAIT_S
        )
    return history_from_result(result)


def default_strategy(strategy: CoreStrategy | None) -> CoreStrategy:
    """The strategy given, or Flower's default, ``FedAvg()``."""
    if strategy is None:
        from .strategy import FedAvg

        return FedAvg()
    if not isinstance(strategy, CoreStrategy):
        raise ConfigError(
            f"strategy must be a Flower strategy (pollinate.compat.flwr.server.strategy) or a "
            f"pollinate Strategy, got {type(strategy).__name__}"
        )
    return strategy


def strategy_server_app(strategy: CoreStrategy, config: ServerConfig) -> ServerApp:
    """A ServerApp running ``strategy`` for ``config.num_rounds``, each round within its timeout."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> Result:
        return strategy.start(grid, num_rounds=config.num_rounds, timeout_s=config.round_timeout)

    return app


def _refuse_custom(server: Any, client_manager: Any) -> None:
    if server is not None:
        raise ConfigError(
            "a custom Flower Server is not supported: pollinate runs the rounds itself; "
            "customize a strategy (subclass FedAvg) or write a pollinate ServerApp"
        )
    if client_manager is not None:
        raise ConfigError(
            "a custom client_manager is not supported: pollinate tracks the connected nodes; "
            "override configure_fit to choose clients"
        )


def _certificate_files(certificates: Any) -> dict[str, bytes]:
    """Flower's ``(ca_cert, server_cert, server_key)`` as the files pollinate's TLS reads."""
    if not (
        isinstance(certificates, tuple)
        and len(certificates) == 3
        and all(isinstance(c, bytes) for c in certificates)
    ):
        raise ConfigError(
            "certificates must be a tuple of three bytes (ca_cert, server_cert, server_key), "
            "e.g. tuple(Path(p).read_bytes() for p in (ca, cert, key))"
        )
    from ....deploy._certs import CA_CERT, SERVER_CERT, SERVER_KEY

    ca, cert, key = certificates
    return {CA_CERT: ca, SERVER_CERT: cert, SERVER_KEY: key}
