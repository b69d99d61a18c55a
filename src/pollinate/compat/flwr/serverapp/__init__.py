"""``flwr.serverapp``: Flower's ``ServerApp`` and ``Grid`` on pollinate's, and its strategies.

``@app.main()`` gets a Flower ``Grid`` (a view of pollinate's: ``get_node_ids``,
``send_and_receive``, ``push_messages``, ``pull_messages``, ``create_message``) and
``Context``; ``ServerApp(server_fn=...)`` is Flower 1.x's form (see ``_app``).
"""

from . import strategy as strategy
from ._app import Grid as Grid
from ._app import ServerApp as ServerApp

__all__ = ["Grid", "ServerApp", "strategy"]


def __getattr__(name: str) -> object:
    """Name what is missing from Flower's ``flwr.serverapp`` and what pollinate has."""
    from .._missing import unsupported

    raise unsupported(__name__, name, "pollinate has Grid, ServerApp and strategy")
