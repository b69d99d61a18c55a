"""``pollinate new``: write a complete, runnable app from a template bundled in the package."""

from __future__ import annotations

import importlib.util
import keyword
import re
import string
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape

from .. import __version__
from ..errors import ConfigError
from ._display import shown

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

__all__ = ["TEMPLATES", "create_app", "new_command", "package_name"]

TEMPLATES = ("pytorch", "keras", "numpy", "sklearn", "jax", "pytorch-dpsgd")
"""The templates, the default first."""

_BASES = {"pytorch-dpsgd": "pytorch"}
"""Templates that are another one with some files replaced: those files are all they hold."""

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_TAKEN = frozenset({"pollinate", "torch", "keras", "jax", "numpy", "sklearn", "scipy", "tests"})
"""Packages an app must not hide (the standard library's are checked too)."""

_DEPENDENCIES = {
    "pytorch": ("torch", "sklearn"),
    "keras": ("keras", "torch", "sklearn"),
    "numpy": ("sklearn",),
    "sklearn": ("sklearn",),
    "jax": ("jax", "sklearn"),
    "pytorch-dpsgd": ("torch", "sklearn", "opacus"),
}
"""The modules each template's app imports, beyond pollinate and numpy."""
_PIP_NAMES = {"sklearn": "scikit-learn"}
_DESCRIPTIONS = {
    "pyproject.toml": "components, run config, federations",
    "README.md": "how to run it, what each file does",
    "task.py": "model, data, train, test and predict",
    "client_app.py": "ClientApp: train/evaluate on a node's data",
    "server_app.py": "ServerApp: FedAvg, centralized evaluation",
}


def package_name(name: str) -> str:
    """The Python package of app ``name``: lowercased, ``-`` as ``_``; a ConfigError if invalid."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a valid app name: use letters, digits, '-' and '_', starting "
            "with a letter (e.g. my-app)"
        )
    package = name.lower().replace("-", "_")
    if keyword.iskeyword(package) or package in sys.stdlib_module_names or package in _TAKEN:
        raise ConfigError(
            f"the app name {name!r} would make a package {package!r} that hides the module "
            f"of that name; choose another name (e.g. {name}-app)"
        )
    return package


def create_app(name: str, template: str, parent: Path) -> list[Path]:
    """Write app ``name`` into ``parent/name`` from ``template``; returns the files written."""
    package = package_name(name)
    if template not in TEMPLATES:
        raise ConfigError(f"unknown template {template!r}; choose one of: {', '.join(TEMPLATES)}")
    app_dir = parent / name
    if app_dir.exists() and (not app_dir.is_dir() or any(app_dir.iterdir())):
        raise ConfigError(
            f"{str(app_dir)!r} already exists and is not empty: choose another name, or "
            "another parent folder with --dir"
        )
    values = {"name": name, "package": package, "pollinate_version": _minimum_version()}
    rendered = {
        app_dir / _target(relative, package): string.Template(source.read_text("utf-8")).substitute(
            values
        )
        for relative, source in _template_files(template)
    }
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(rendered)


def _template_files(template: str) -> Iterator[tuple[PurePosixPath, Traversable]]:
    """The template's files, by path: its base's, with the template's own in their place."""
    templates = resources.files("pollinate.templates")
    files: dict[PurePosixPath, Traversable] = {}
    if template in _BASES:
        files.update(_walk(templates.joinpath(_BASES[template]), PurePosixPath()))
    files.update(_walk(templates.joinpath(template), PurePosixPath()))
    yield from files.items()


def _walk(
    folder: Traversable, prefix: PurePosixPath
) -> Iterator[tuple[PurePosixPath, Traversable]]:
    for child in sorted(folder.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            yield from _walk(child, prefix / child.name)
        elif child.name.endswith(".tmpl"):
            yield prefix / child.name, child


def _target(relative: PurePosixPath, package: str) -> Path:
    """``package/task.py.tmpl`` -> ``<package>/task.py``; ``dot-gitignore`` -> ``.gitignore``."""
    parts = [package if part == "package" else part for part in relative.parts]
    name = parts[-1].removesuffix(".tmpl")
    parts[-1] = "." + name.removeprefix("dot-") if name.startswith("dot-") else name
    return Path(*parts)


def _minimum_version() -> str:
    """The major.minor of this pollinate: the least an app written by it asks for."""
    match = re.match(r"\d+\.\d+", __version__)
    return match.group(0) if match else "0.1"


@click.command("new", short_help="Write a new app from a template.")
@click.argument("name")
@click.option(
    "--template",
    "-t",
    type=click.Choice(TEMPLATES),
    default=TEMPLATES[0],
    show_default=True,
    help="Which model and framework the app starts from.",
)
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    help="The folder to create the app in (default: the current folder).",
)
def new_command(name: str, template: str, parent: Path) -> None:
    """Create a new app NAME from a template: a folder you can run right away.

    The app learns to classify handwritten digits on 10 virtual nodes; its package is NAME
    lowercased, with '-' as '_'.
    """
    files = create_app(name, template, parent)
    app_dir = parent / name
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"Created [bold]{escape(shown(app_dir))}[/], a {template} app:\n")
    order = list(_DESCRIPTIONS)
    listed = sorted((p for p in files if p.name in order), key=lambda p: order.index(p.name))
    relative = [path.relative_to(app_dir).as_posix() for path in listed]
    width = max(map(len, relative)) + 3
    for path, shown_path in zip(listed, relative, strict=True):
        console.print(f"  {escape(shown_path):<{width}}{_DESCRIPTIONS[path.name]}")
    missing = [m for m in _DEPENDENCIES[template] if importlib.util.find_spec(m) is None]
    console.print("\nNext:")
    if missing:
        names = " ".join(_PIP_NAMES.get(m, m) for m in missing)
        console.print(f"  pip install {names}    # what the app needs that is missing here")
    console.print(f"  pollinate run {escape(shown(app_dir))}")
    console.print(f"  pollinate compare {escape(shown(app_dir))}    # federated vs each node alone")
