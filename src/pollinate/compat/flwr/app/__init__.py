"""``flwr.app``: the message API's data types (records, Message, Context), on pollinate's.

Each name is pollinate's own type, or a subclass or view of it with Flower's constructors and
methods (``pollinate.compat.flwr._records`` says which): what an app builds from them travels
on every pollinate transport unchanged.
"""

from .._records import Array as Array
from .._records import ArrayRecord as ArrayRecord
from .._records import ConfigRecord as ConfigRecord
from .._records import Context as Context
from .._records import Error as Error
from .._records import Message as Message
from .._records import MessageType as MessageType
from .._records import Metadata as Metadata
from .._records import MetricRecord as MetricRecord
from .._records import RecordDict as RecordDict
from .._records import UserConfig as UserConfig
from .._records import UserConfigValue as UserConfigValue

__all__ = [
    "Array",
    "ArrayRecord",
    "ConfigRecord",
    "Context",
    "Error",
    "Message",
    "MessageType",
    "Metadata",
    "MetricRecord",
    "RecordDict",
    "UserConfig",
    "UserConfigValue",
]


def __getattr__(name: str) -> object:
    """Name what is missing from Flower's ``flwr.app`` and what pollinate has."""
    from .._missing import unsupported

    raise unsupported(__name__, name, "pollinate has " + ", ".join(__all__))
