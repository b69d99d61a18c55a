"""compat.flwr.common: Parameters, their conversions, and the record names' lazy loading."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest

from pollinate.compat.flwr import common
from pollinate.compat.flwr.common import (
    Parameters,
    ndarray_to_bytes,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from pollinate.errors import ConfigError


def test_ndarrays_to_parameters_keeps_arrays_and_serializes_only_when_read():
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array(7)]
    parameters = ndarrays_to_parameters(arrays)
    assert parameters.arrays is not None and parameters.arrays[0] is arrays[0]
    assert parameters.tensor_type == "numpy.ndarray"
    loaded = [np.load(BytesIO(t), allow_pickle=False) for t in parameters.tensors]
    assert all(np.array_equal(a, b) for a, b in zip(arrays, loaded, strict=True))


def test_parameters_to_ndarrays_gives_writable_copies_from_arrays_or_bytes():
    original = np.ones(3)
    for parameters in (
        ndarrays_to_parameters([original]),
        Parameters(tensors=[ndarray_to_bytes(original)], tensor_type="numpy.ndarray"),
    ):
        (out,) = parameters_to_ndarrays(parameters)
        assert out.flags.writeable and out is not original
        out += 1  # the caller's copy: the parameters are not changed
        assert np.array_equal(parameters_to_ndarrays(parameters)[0], original)


def test_parameters_compare_by_content():
    a = ndarrays_to_parameters([np.ones(2)])
    b = Parameters([ndarray_to_bytes(np.ones(2))], "numpy.ndarray")
    assert a == b and a != ndarrays_to_parameters([np.zeros(2)])


def test_wrong_input_gets_one_clear_error():
    with pytest.raises(ConfigError, match="ndarrays_to_parameters"):
        parameters_to_ndarrays([np.ones(2)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tensor_type"):
        parameters_to_ndarrays(Parameters([b"x"], "torch.Tensor"))


def test_unknown_name_says_it_is_not_supported():
    with pytest.raises(ImportError, match=r"common has no 'NoSuchThing'.*not supported"):
        common.NoSuchThing  # noqa: B018
    with pytest.raises(ImportError, match=r"flwr.server has no 'NoSuchThing'.*not supported"):
        from pollinate.compat.flwr.server import NoSuchThing  # noqa: F401
    with pytest.raises(AttributeError):  # tools probe private names, and get what they expect
        common.__wrapped__  # noqa: B018
