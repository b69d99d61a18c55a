"""The errors a SecAgg+ node raises: a refused protocol message, or mods set up wrong."""

from __future__ import annotations

from ...errors import PollinateError

__all__ = ["ModOrderError", "SecAggError"]


class SecAggError(PollinateError):
    """A protocol message a node refuses: replayed, altered, out of order, or unsafe."""


class ModOrderError(SecAggError):
    """The node's mods cannot run SecAgg+ as set up: one is missing or in the wrong order.

    The server ends the round with the node's message rather than count it as a dropout:
    every node of the app has the same mods.
    """


def outside_secagg(mod: str) -> ModOrderError:
    """The error of ``mod`` when it gets a stage message: secaggplus_mod is not outside it."""
    return ModOrderError(
        f"{mod} got a SecAgg+ stage message: secaggplus_mod is missing or listed after it, "
        f"so {mod} would see the protocol's messages and the masked vector, not the update: "
        f"list secaggplus_mod first, ClientApp(mods=[secaggplus_mod, {mod}])"
    )
