"""compat.flwr's smaller Flower modules that examples import, and missing ones' one error.

Found by running Flower's own examples (advanced-pytorch, custom-mods, flowertune) with only
their imports changed: each import here failed before, or failed with a misleading message.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

from pollinate.compat.flwr._missing import UnsupportedName


def test_common_typing_has_user_config_and_names_what_it_lacks():
    from pollinate.compat.flwr.common.typing import UserConfig, UserConfigValue

    assert UserConfig is not None and UserConfigValue is not None
    with pytest.raises(UnsupportedName, match=r"common.typing has no 'Run'.*not supported"):
        from pollinate.compat.flwr.common.typing import Run  # noqa: F401


def test_client_typing_names_the_mod_signature():
    from pollinate.compat.flwr.client.typing import ClientAppCallable, ClientFn, ClientFnExt, Mod
    from pollinate.compat.flwr.clientapp.typing import ClientAppCallable as AppCallable

    assert AppCallable == ClientAppCallable
    assert all(t is not None for t in (ClientFn, ClientFnExt, Mod))


def test_unflatten_dict_nests_dotted_run_config_keys():
    from pollinate.compat.flwr.common.config import flatten_dict, unflatten_dict

    flat = {"model.name": "m", "model.lora.r": 8, "train.lr": 0.1, "rounds": 3}
    nested = unflatten_dict(flat)
    assert nested == {"model": {"name": "m", "lora": {"r": 8}}, "train": {"lr": 0.1}, "rounds": 3}
    assert flatten_dict(nested) == flat


def test_aggregate_helpers_are_the_example_weighted_means():
    from pollinate.compat.flwr.server.strategy.aggregate import aggregate, weighted_loss_avg

    (mean,) = aggregate([([np.array([0.0, 2.0])], 1), ([np.array([3.0, 5.0])], 2)])
    np.testing.assert_allclose(mean, [2.0, 4.0])
    assert mean.flags.writeable
    assert weighted_loss_avg([(1, 1.0), (3, 3.0)]) == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("module", "hint"),
    [
        ("pollinate.compat.flwr.server.workflow.default_workflows", "DefaultWorkflow, SecAgg"),
        ("pollinate.compat.flwr.simulation.ray_transport", "Ray"),
        ("pollinate.compat.flwr.common.no_such_module", "flwr.app, flwr.client"),
    ],
)
def test_a_missing_flower_module_is_one_clear_error(module, hint):
    sys.modules.pop(module, None)
    with pytest.raises(UnsupportedName, match=hint) as caught:
        importlib.import_module(module)
    assert isinstance(caught.value, ModuleNotFoundError)  # try/except fallbacks still work
    assert "pip install" not in str(caught.value)


def test_modules_outside_flower_s_names_are_left_alone():
    with pytest.raises(ModuleNotFoundError) as caught:
        importlib.import_module("pollinate.no_such_module")
    assert not isinstance(caught.value, UnsupportedName)
