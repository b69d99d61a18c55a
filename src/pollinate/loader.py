"""Find an app object from a ``"package.module:attribute"`` string, with clear errors."""

from __future__ import annotations

import importlib
import os
import sys
import threading
from pathlib import Path
from typing import Any, TypeVar

from .errors import AppError

__all__ = ["load_object"]

T = TypeVar("T")

_IMPORTS = threading.RLock()


def load_object(
    spec: str, expected: type[T], search_path: str | Path | None = None, *, fresh: bool = False
) -> T:
    """Import ``spec`` (``"module:attr"``), with ``search_path`` first on ``sys.path``.

    ``fresh`` first forgets modules of the same top-level package imported from elsewhere:
    a long-lived link or node runs one version of an app after another.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppError(f"app reference {spec!r} must look like 'package.module:attribute'")
    with _IMPORTS:  # one fresh import at a time: another thread's could undo this one's
        if search_path is not None:
            path = str(Path(search_path).resolve())
            if fresh:
                if path in sys.path:
                    sys.path.remove(path)
                _forget_other_copies(module_name.partition(".")[0], path)
            if path not in sys.path:
                sys.path.insert(0, path)
        module = _import(module_name, spec, search_path)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AppError(f"module {module_name!r} has no attribute {attr!r} (for {spec!r})")
        obj = getattr(obj, part)
    if not isinstance(obj, expected):
        raise AppError(f"{spec!r} is a {type(obj).__name__}, expected a {expected.__name__}")
    return obj


def _import(module_name: str, spec: str, search_path: str | Path | None) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and _is_part_of(module_name, err.name):
            where = f" in {search_path}" if search_path else ""
            raise AppError(f"cannot find module {module_name!r}{where} (for {spec!r})") from None
        raise AppError(
            f"importing {module_name!r} failed: {err}; install the missing package "
            f"(e.g. pip install {err.name})"
        ) from None
    except Exception as err:
        raise AppError(f"importing {module_name!r} raised {type(err).__name__}: {err}") from err


def _forget_other_copies(package: str, path: str) -> None:
    """Drop ``package`` and its submodules from ``sys.modules`` unless they come from ``path``."""
    for name, module in list(sys.modules.items()):
        if name != package and not name.startswith(package + "."):
            continue
        origin = getattr(module, "__file__", None) or ""
        if not origin.startswith(path + os.sep):
            del sys.modules[name]
    importlib.invalidate_caches()


def _is_part_of(module_name: str, missing: str) -> bool:
    """True when the missing module is ``module_name`` itself or one of its parent packages."""
    return module_name == missing or module_name.startswith(missing + ".")
