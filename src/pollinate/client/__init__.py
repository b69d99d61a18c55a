"""The node side: ClientApp, its handlers and mods, and the classic NumPyClient."""

from ._app import ClientApp as ClientApp
from ._app import Lifespan as Lifespan
from ._app import Mod as Mod
from ._app import Warmup as Warmup
from ._handler import Handler as Handler
from ._numpy_client import ClientFn as ClientFn
from ._numpy_client import NumPyClient as NumPyClient

__all__ = ["ClientApp", "ClientFn", "Handler", "Lifespan", "Mod", "NumPyClient", "Warmup"]
