"""pollinate: federated learning for Python, in simulation and in deployment.

Write a ClientApp (what each node does with its own data) and a ServerApp (the strategy that
combines their updates) once; run them on virtual nodes with ``run_simulation`` or
``pollinate run``, or on real machines over the network.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from .client import ClientApp as ClientApp
from .client import NumPyClient as NumPyClient
from .context import Context as Context
from .errors import PollinateError as PollinateError
from .message import Error as Error
from .message import ErrorCode as ErrorCode
from .message import Message as Message
from .message import MessageType as MessageType
from .message import Metadata as Metadata
from .records import Array as Array
from .records import ArrayRecord as ArrayRecord
from .records import ConfigRecord as ConfigRecord
from .records import MetricRecord as MetricRecord
from .records import RecordDict as RecordDict
from .server import Grid as Grid
from .server import Result as Result
from .server import ServerApp as ServerApp
from .simulation import run_simulation as run_simulation
from .strategy import FedAvg as FedAvg
from .strategy import Strategy as Strategy

try:
    __version__ = version("pollinate")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "Array",
    "ArrayRecord",
    "ClientApp",
    "ConfigRecord",
    "Context",
    "Error",
    "ErrorCode",
    "FedAvg",
    "Grid",
    "Message",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "NumPyClient",
    "PollinateError",
    "RecordDict",
    "Result",
    "ServerApp",
    "Strategy",
    "__version__",
    "run_simulation",
    "start_client",
    "start_server",
]

if TYPE_CHECKING:  # type checkers see the real functions; at run time they load lazily
    from .deploy import start_client as start_client
    from .deploy import start_server as start_server

_DEPLOY = ("start_client", "start_server")


def __getattr__(name: str) -> object:
    """Load ``start_server`` / ``start_client`` (and gRPC) only when first used."""
    if name in _DEPLOY:
        from . import deploy

        return getattr(deploy, name)
    raise AttributeError(f"module 'pollinate' has no attribute {name!r}")
