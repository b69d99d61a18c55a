"""Flower's ``flwr.clientapp.typing``: the signature of a handler (and of a mod's call_next)."""

from __future__ import annotations

from ..client.typing import ClientAppCallable as ClientAppCallable

__all__ = ["ClientAppCallable"]
