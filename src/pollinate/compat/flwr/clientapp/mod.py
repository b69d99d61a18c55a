"""Flower's ``flwr.clientapp.mod``: its privacy mods, on ``pollinate.privacy``'s.

``fixedclipping_mod`` (with ``DifferentialPrivacyClientSideFixedClipping`` on the server),
``LocalDpMod``, and ``secaggplus_mod`` / ``secagg_mod`` (with ``SecAggPlusWorkflow`` /
``SecAggWorkflow`` on the server); ``adaptiveclipping_mod`` and Flower's other built-in
mods raise one error naming what to use instead.
"""

from .._mods import LocalDpMod as LocalDpMod
from .._mods import fixedclipping_mod as fixedclipping_mod
from .._mods import secagg_mod as secagg_mod
from .._mods import secaggplus_mod as secaggplus_mod

__all__ = ["LocalDpMod", "fixedclipping_mod", "secagg_mod", "secaggplus_mod"]


def __getattr__(name: str) -> object:
    """Flower's mods pollinate does not map: one error naming what to use instead."""
    from .._mods import refused_mod

    raise refused_mod(__name__, name)
