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
_APP_FOLDERS: list[str] = []
"""The folder of the app the last fresh load imported from."""


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
                _forget_other_apps(module_name.partition(".")[0], path)
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


def _forget_other_apps(package: str, path: str) -> None:
    """Make ``path`` the only app folder: forget other apps' folders and modules.

    Drops ``package`` and its submodules unless they come from ``path``, and every module
    from a folder an earlier fresh load used (an app's helper modules too), so nothing of
    another app, or of another version of this one, is imported by mistake.
    """
    others = [root for root in _APP_FOLDERS if root != path]
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if name == package or name.startswith(package + "."):
            stale = not origin.startswith(path + os.sep)
        else:
            stale = any(origin.startswith(root + os.sep) for root in others)
        if stale:
            del sys.modules[name]
    for root in [*others, path]:
        while root in sys.path:
            sys.path.remove(root)
    _APP_FOLDERS[:] = [path]
    importlib.invalidate_caches()


def _is_part_of(module_name: str, missing: str) -> bool:
    """True when the missing module is ``module_name`` itself or one of its parent packages."""
    return module_name == missing or module_name.startswith(missing + ".")
