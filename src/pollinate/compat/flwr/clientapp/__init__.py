"""``flwr.clientapp``: Flower's ``ClientApp``, a pollinate ClientApp that speaks Flower's types.

``@app.train()``, ``@app.evaluate()``, ``@app.query()`` (with Flower's ``action`` names and
per-handler ``mods``), ``@app.lifespan()``, ``ClientApp(mods=[...])`` and the Flower 1.x form
``ClientApp(client_fn=...)`` all map onto ``pollinate.ClientApp``; handlers get Flower views
of pollinate's messages and contexts, and their replies go back as pollinate Messages.
``mod`` holds Flower's DP mods (``fixedclipping_mod``, ``LocalDpMod``).
"""

from ._app import ClientApp as ClientApp

__all__ = ["ClientApp"]


def __getattr__(name: str) -> object:
    """``mod`` (Flower's DP mods), loaded when first used; any other name is missing."""
    import importlib

    from .._missing import unsupported

    if name == "mod":
        return importlib.import_module(f"{__name__}.mod")
    raise unsupported(__name__, name, "ClientApp(mods=[...]) takes your own mods")
