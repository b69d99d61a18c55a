"""Deployment: the link server, node processes, TLS, mutual TLS and node identity.

The same ClientApp and ServerApp that run in simulation run here unchanged: a ``Link``
serves nodes over gRPC and hands the ServerApp a Grid over them; ``run_node`` connects a
node. ``serve_link`` is a link that takes submitted runs (``pollinate link``);
``start_server`` / ``start_client`` are the classic script style on top; ``Runs``,
``ControlClient`` and ``pack_app`` are what ``pollinate run / ls / log / stop`` use;
``NodeStatus`` and the link views (``LocalLinkView``, ``ControlLinkView``) what a link's
dashboard shows.
"""

from ._api import serve_link as serve_link
from ._api import start_client as start_client
from ._api import start_server as start_server
from ._bundle import AppBundle as AppBundle
from ._bundle import pack_app as pack_app
from ._certs import DEFAULT_HOSTNAMES as DEFAULT_HOSTNAMES
from ._certs import CertFiles as CertFiles
from ._certs import ClientFiles as ClientFiles
from ._certs import channel_credentials as channel_credentials
from ._certs import make_dev_certs as make_dev_certs
from ._certs import revoke as revoke
from ._certs import server_credentials as server_credentials
from ._control import ControlClient as ControlClient
from ._control import RunSummary as RunSummary
from ._control import Submission as Submission
from ._grid import LinkGrid as LinkGrid
from ._identity import NodeKey as NodeKey
from ._identity import Verifier as Verifier
from ._link import Link as Link
from ._node import Backoff as Backoff
from ._node import IdFile as IdFile
from ._node import NodeSession as NodeSession
from ._node import run_node as run_node
from ._nodestats import NodeFailure as NodeFailure
from ._nodestats import NodeStatus as NodeStatus
from ._runs import Runs as Runs
from ._status import ControlLinkView as ControlLinkView
from ._status import LocalLinkView as LocalLinkView
from ._store import AppRef as AppRef

__all__ = [
    "AppBundle",
    "AppRef",
    "Backoff",
    "CertFiles",
    "ClientFiles",
    "ControlClient",
    "ControlLinkView",
    "DEFAULT_HOSTNAMES",
    "IdFile",
    "Link",
    "LinkGrid",
    "LocalLinkView",
    "NodeFailure",
    "NodeKey",
    "NodeSession",
    "NodeStatus",
    "RunSummary",
    "Runs",
    "Submission",
    "Verifier",
    "channel_credentials",
    "make_dev_certs",
    "pack_app",
    "revoke",
    "run_node",
    "serve_link",
    "server_credentials",
    "start_client",
    "start_server",
]
