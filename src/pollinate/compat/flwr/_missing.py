"""The one error for a Flower name this layer does not map, and the classic API, lazily."""

from __future__ import annotations

import importlib
from types import ModuleType

from ...errors import ConfigError

__all__ = ["classic", "unsupported"]


def unsupported(module: str, name: str, hint: str) -> AttributeError:
    """An AttributeError that names the missing Flower name, the alternative and the guide."""
    return AttributeError(
        f"{module} has no {name!r}: this part of Flower's API is not supported ({hint}); "
        "docs/migrating-from-flower.md lists what is, and the pollinate equivalents"
    )


def classic(module: str) -> ModuleType:
    """``pollinate.compat.flwr.<module>`` of the classic API, imported when first needed.

    The message API's Flower 1.x forms (``ClientApp(client_fn=...)``,
    ``ServerApp(server_fn=...)``) run on the classic API's clients and strategies.
    """
    try:
        return importlib.import_module(f"pollinate.compat.flwr.{module}")
    except ModuleNotFoundError as err:
        if err.name is None or not err.name.startswith("pollinate.compat.flwr"):
            raise
        raise ConfigError(
            f"this Flower 1.x form needs pollinate.compat.flwr.{module} (the classic API), "
            "which this installation lacks: use the message API (@app.train(), @app.main())"
        ) from None
