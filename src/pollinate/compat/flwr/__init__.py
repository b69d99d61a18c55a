"""Flower's API on pollinate: write ``import pollinate.compat.flwr as fl`` for ``import flwr``.

The classic API of Flower 1.x (``client``, ``server``, ``server.strategy``, ``simulation``,
``common``) and the message API of Flower 1.25+ (``app``, ``clientapp``, ``serverapp``,
``serverapp.strategy``) keep their names and signatures here. Each one converts its
arguments and delegates to pollinate's core: there is no second engine. Where Flower's
defaults differ from pollinate's, the Flower one is kept and said once in the log.
docs/migrating-from-flower.md maps every name to its native pollinate equivalent.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from ... import __version__ as __version__
from ._missing import install_module_finder as _install_module_finder

_install_module_finder()  # a Flower module this layer lacks: one clear error, not "pip install"

if TYPE_CHECKING:
    from . import app as app
    from . import client as client
    from . import clientapp as clientapp
    from . import common as common
    from . import server as server
    from . import serverapp as serverapp
    from . import simulation as simulation

__all__ = [
    "__version__",
    "app",
    "client",
    "clientapp",
    "common",
    "server",
    "serverapp",
    "simulation",
]

_SUBMODULES = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> ModuleType:
    """Import a submodule when first used, as ``fl.server`` after ``import flwr as fl`` works."""
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    from ._missing import unsupported

    raise unsupported("pollinate.compat.flwr", name, "the native API is the pollinate package")
