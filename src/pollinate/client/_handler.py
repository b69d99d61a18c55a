"""The shape of a handler, shared by ClientApp and the classic NumPyClient adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from ..context import Context
from ..message import Message

__all__ = ["Handler"]

Handler: TypeAlias = Callable[[Message, Context], Message]
"""A function that answers one message: ``(message, context) -> reply``."""
