"""Fixtures for the example apps: each one ready to run on virtual nodes in this process."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pollinate import Result, ServerApp, run_simulation
from pollinate.compare import Comparison, run_comparison
from pollinate.loader import load_object

from .._shared import require_mnist

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Example:
    """An example app: its folder, its package and its default run config."""

    app_dir: Path
    package: str

    @property
    def config(self) -> dict[str, Any]:
        """The ``[tool.pollinate.app.config]`` table of its pyproject.toml."""
        with (self.app_dir / "pyproject.toml").open("rb") as f:
            return dict(tomllib.load(f)["tool"]["pollinate"]["app"]["config"])

    def module(self, name: str) -> ModuleType:
        """One of the app's modules (``"task"``), imported with its folder on ``sys.path``."""
        if str(self.app_dir) not in sys.path:
            sys.path.insert(0, str(self.app_dir))
        return importlib.import_module(f"{self.package}.{name}")

    def run(self, overrides: Mapping[str, Any] | None = None, num_nodes: int = 3) -> Result:
        """Run it inline with ``run_simulation``, as ``pollinate run`` would, keys overridden."""
        server_app = load_object(f"{self.package}.server_app:app", ServerApp, self.app_dir)
        return run_simulation(
            server_app,
            f"{self.package}.client_app:app",
            num_nodes=num_nodes,
            app_dir=self.app_dir,
            run_config={**self.config, **(overrides or {})},
        )

    def compare(self, overrides: Mapping[str, Any] | None = None) -> Comparison:
        """Run ``pollinate compare``'s training inline, scored by the app's predict hook."""
        server_app = load_object(f"{self.package}.server_app:app", ServerApp, self.app_dir)
        predict = load_object(f"{self.package}.task:predict", object, self.app_dir)
        return run_comparison(
            server_app,
            f"{self.package}.client_app:app",
            predict,  # type: ignore[arg-type]
            num_nodes=3,
            app_dir=self.app_dir,
            run_config={**self.config, **(overrides or {})},
        )


@pytest.fixture(scope="session")
def quickstart() -> Example:
    return Example(REPO / "examples" / "quickstart", "quickstart")


@pytest.fixture(scope="session")
def skewed_mnist() -> Example:
    return Example(REPO / "examples" / "skewed-mnist", "skewed_mnist")


@pytest.fixture(scope="session")
def private_mnist() -> Example:
    return Example(REPO / "examples" / "private-mnist", "private_mnist")


@pytest.fixture(scope="session")
def cross_device_mnist() -> Example:
    return Example(REPO / "examples" / "cross-device-mnist", "cross_device_mnist")


@pytest.fixture(scope="session")
def uneven_devices() -> Example:
    return Example(REPO / "examples" / "uneven-devices", "uneven_devices")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST files beside the repository (see tests/_shared.py)."""
    return require_mnist()
