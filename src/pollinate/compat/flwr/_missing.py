"""The one error for a Flower name (or module) this layer does not map.

``install_module_finder`` makes ``import pollinate.compat.flwr.<a module Flower has and this
layer lacks>`` fail with that one error (naming the pollinate way) instead of Python's "No
module named ...", which tools read as a package to install.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

from ...errors import ConfigError

__all__ = [
    "UnsupportedModule",
    "UnsupportedName",
    "install_module_finder",
    "unsupported",
    "unsupported_module",
]

PACKAGE = "pollinate.compat.flwr"

_MODULE_HINTS = (
    (
        ("server.workflow", "server.compat", "common.secure_aggregation"),
        "Flower's workflow and SecAgg+ internals (the stages, WorkflowState, "
        "MAIN_PARAMS_RECORD, quantize) are not mapped: DefaultWorkflow, SecAggPlusWorkflow "
        "and SecAggWorkflow from flwr.server.workflow, LegacyContext from flwr.server and "
        "secaggplus_mod from flwr.client.mod run pollinate's SecAgg+ "
        "(docs/secure-aggregation.md)",
    ),
    (
        ("simulation.ray_transport", "server.superlink.fleet.vce"),
        "pollinate simulates without Ray: start_simulation, run_simulation or pollinate run, "
        'with backend="process" for nodes in parallel',
    ),
    (
        ("proto", "supercore", "superlink", "supernode", "server.superlink", "cli", "common.grpc"),
        "Flower's internals (SuperLink, SuperNode, protobuf, the flwr CLI) have no mapping: "
        "pollinate link, pollinate node and pollinate run are pollinate's",
    ),
)


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


class UnsupportedModule(UnsupportedName, ModuleNotFoundError):
    """A Flower module pollinate does not map: a ModuleNotFoundError, so fallbacks still work."""


def unsupported_module(fullname: str) -> UnsupportedModule:
    """The error for importing ``fullname``, a module under ``pollinate.compat.flwr``."""
    flower = fullname.removeprefix(f"{PACKAGE}.")
    hint = next(
        (text for prefixes, text in _MODULE_HINTS if _under(flower, prefixes)),
        "Import from the modules Flower's tutorials use (flwr.app, flwr.client, flwr.server...)",
    )
    error = UnsupportedModule(
        f"{fullname} (Flower's flwr.{flower}) is not supported. {hint}. "
        "docs/migrating-from-flower.md lists what is, and the pollinate equivalents"
    )
    error.name = fullname
    return error


def _under(module: str, prefixes: Sequence[str]) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in prefixes)


class _FlowerModuleFinder(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: a module under the package that no finder found is unmapped."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.startswith(f"{PACKAGE}.") and not fullname.rpartition(".")[2].startswith("_"):
            raise unsupported_module(fullname)
        return None


def install_module_finder() -> None:
    """Put the finder last on ``sys.meta_path``, once."""
    if not any(isinstance(f, _FlowerModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_FlowerModuleFinder())
