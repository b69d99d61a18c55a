"""Each public package exports exactly its public names, in a sorted ``__all__``."""

import importlib
import types

import pytest

PACKAGES = [
    "pollinate",
    "pollinate.client",
    "pollinate.server",
    "pollinate.strategy",
    "pollinate.privacy",
    "pollinate.simulation",
    "pollinate.compare",
    "pollinate.config",
    "pollinate.deploy",
    "pollinate.frameworks",
    "pollinate.records",
    "pollinate.message",
    "pollinate.context",
    "pollinate.errors",
    "pollinate.wire",
    "pollinate.cli",
    "pollinate.report",
    "pollinate.tracking",
    "pollinate.dashboard",
    "pollinate.datasets",
    "pollinate.datasets.partition",
    "pollinate.compat.flwr",
    "pollinate.compat.flwr.app",
    "pollinate.compat.flwr.client",
    "pollinate.compat.flwr.clientapp",
    "pollinate.compat.flwr.common",
    "pollinate.compat.flwr.server",
    "pollinate.compat.flwr.server.strategy",
    "pollinate.compat.flwr.serverapp",
    "pollinate.compat.flwr.serverapp.strategy",
    "pollinate.compat.flwr.simulation",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_complete(name):
    module = importlib.import_module(name)
    exported = module.__all__
    assert list(exported) == sorted(exported), f"{name}.__all__ is not sorted"
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and isinstance(value, (type, types.FunctionType))
        and value.__module__.startswith(name)
    }
    missing = public - set(exported)
    assert not missing, f"{name} defines public names missing from __all__: {sorted(missing)}"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which it lacks"


PLUMBING = [
    "take_resume_point",
    "still_offered",
    "resuming",
    "observing",
    "report_round_start",
    "report_strategy_state",
]
"""How a runner once passed a run to ``Strategy.start`` (context variables): not an API."""


@pytest.mark.parametrize("name", PACKAGES)
def test_no_package_exports_the_run_plumbing(name):
    exported = set(importlib.import_module(name).__all__)
    assert not exported & set(PLUMBING), f"{name} exports {sorted(exported & set(PLUMBING))}"
