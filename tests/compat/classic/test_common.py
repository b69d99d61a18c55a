"""compat.flwr.common: Parameters, their conversions, and the record names' lazy loading."""

from __future__ import annotations

import io
import logging
from io import BytesIO

import numpy as np
import pytest

from pollinate.compat.flwr import common
from pollinate.compat.flwr.common import (
    Parameters,
    log,
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


def _no_log_handlers(monkeypatch):
    """Logging as a plain script has it: no handlers on the root or pollinate loggers.

    Called in the test itself: pytest adds its capture handlers to the root when the call
    starts, after the fixtures.
    """
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logging.getLogger("pollinate"), "handlers", [])


def test_flower_info_logs_show_as_flower_shows_them(monkeypatch, capsys):
    # Flower's examples report progress with log(INFO, ...): Flower prints them by default.
    _no_log_handlers(monkeypatch)
    log(logging.INFO, "New best global model found: %f", 0.5)
    log(logging.WARNING, "and warnings, once")  # as Python's last resort would show them
    log(logging.DEBUG, "not debug")
    assert capsys.readouterr().err == "New best global model found: 0.500000\nand warnings, once\n"


def test_flower_info_logs_are_printed_once_where_a_handler_shows_them(monkeypatch, capsys):
    # pollinate run --verbose (or a user's logging.basicConfig) shows INFO already.
    _no_log_handlers(monkeypatch)
    shown = io.StringIO()
    logging.getLogger("pollinate").addHandler(logging.StreamHandler(shown))
    log(logging.INFO, "once")
    assert capsys.readouterr().err == ""
    assert shown.getvalue() == "once\n"
