"""Each public package exports exactly its public names, in a sorted ``__all__``."""

import importlib
import types

import pytest

PACKAGES = [
    "pollinate",
    "pollinate.client",
    "pollinate.server",
    "pollinate.strategy",
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
    "pollinate.datasets",
    "pollinate.datasets.partition",
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
