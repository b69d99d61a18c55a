"""The one error for a Flower name this layer does not map, and the classic API, lazily."""

from __future__ import annotations

import importlib
from types import ModuleType

from ...errors import ConfigError

__all__ = ["UnsupportedName", "classic", "unsupported"]


class UnsupportedName(ConfigError, ImportError):
    """A Flower name pollinate does not map: ``from flwr... import X`` fails with this.

    An ImportError (so ``try: ... except ImportError`` fallbacks still work) that is not an
    AttributeError, so that ``from ... import`` shows its message instead of Python's own.
    """


def unsupported(module: str, name: str, hint: str) -> Exception:
    """The error for ``module.name``: the missing name, the alternative and the guide.

    Private and dunder names get a plain AttributeError, as tools probe modules for them.
    """
    if name.startswith("_"):
        return AttributeError(f"module {module!r} has no attribute {name!r}")
    return UnsupportedName(
        f"{module} has no {name!r}: this part of Flower's API is not supported ({hint}); "
        "docs/migrating-from-flower.md lists what is, and the pollinate equivalents"
    )


def classic(module: str) -> ModuleType:
    """``pollinate.compat.flwr.<module>`` of the classic API, imported when first needed.

    The message API's Flower 1.x forms (``ClientApp(client_fn=...)``,
    ``ServerApp(server_fn=...)``) run on the classic API's clients and strategies; importing
    them only then keeps ``import pollinate.compat.flwr.clientapp`` light.
    """
    return importlib.import_module(f"pollinate.compat.flwr.{module}")
