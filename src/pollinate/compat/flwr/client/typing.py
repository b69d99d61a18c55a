"""Flower's ``flwr.client.typing``: the signatures of ``client_fn`` and of a ClientApp's mods.

A mod is ``mod(msg, context, call_next) -> Message``: ``ClientApp(mods=[mod])`` runs it around
every handler, on Flower's message and context views (pollinate's own mods take the same
three arguments, on pollinate's types).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from .._records import Context, Message
from .client import Client

__all__ = ["ClientAppCallable", "ClientFn", "ClientFnExt", "Mod"]

ClientFn: TypeAlias = Callable[[str], Client]
"""Flower 1.x's legacy ``client_fn(cid)``."""
ClientFnExt: TypeAlias = Callable[[Context], Client]
"""``client_fn(context)``: the partition is ``context.node_config["partition-id"]``."""
ClientAppCallable: TypeAlias = Callable[[Message, Context], Message]
"""A ClientApp's handler, and a mod's ``call_next``."""
Mod: TypeAlias = Callable[[Message, Context, ClientAppCallable], Message]
"""``mod(msg, context, call_next) -> Message``."""
