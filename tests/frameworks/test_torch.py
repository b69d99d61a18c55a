import numpy as np
import pytest
import torch

from pollinate import ArrayRecord, frameworks
from pollinate.errors import RecordError


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2), torch.nn.Linear(2, 1)
    )


def test_round_trip_keeps_names_order_and_buffers():
    model = _net()
    arrays = frameworks.torch.to_arrays(model)
    assert list(arrays) == list(model.state_dict())  # buffers (running_mean, ...) included
    clone = frameworks.torch.load_arrays(_net(), arrays)
    for a, b in zip(model.state_dict().values(), clone.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_to_arrays_shares_memory_and_load_copies():
    model = torch.nn.Linear(3, 2)
    arrays = frameworks.torch.to_arrays(model)
    assert np.shares_memory(arrays["weight"].numpy(), model.weight.detach().numpy())
    other = frameworks.torch.load_arrays(torch.nn.Linear(3, 2), arrays)
    with torch.no_grad():
        other.weight.add_(1.0)  # training the loaded model never writes into the record
    assert torch.equal(torch.from_numpy(np.array(arrays["weight"].numpy())), model.weight.data)


def test_to_arrays_takes_a_state_dict_too():
    model = torch.nn.Linear(3, 2)
    assert frameworks.torch.to_arrays(model.state_dict()) == frameworks.torch.to_arrays(model)


def test_to_state_dict_gives_writable_tensors_in_order():
    arrays = ArrayRecord({"b": np.ones(2, np.float32), "a": np.zeros(1, np.float64)})
    state = frameworks.torch.to_state_dict(arrays)
    assert list(state) == ["b", "a"] and state["a"].dtype == torch.float64
    state["b"][0] = 5.0
    assert arrays["b"].numpy()[0] == 1.0


def test_load_names_what_is_missing_or_extra():
    arrays = frameworks.torch.to_arrays(torch.nn.Linear(3, 2))
    del arrays["bias"]
    arrays["head.bias"] = np.zeros(2, np.float32)
    with pytest.raises(RecordError, match=r"missing 'bias'; unexpected 'head\.bias'"):
        frameworks.torch.load_arrays(torch.nn.Linear(3, 2), arrays)


def test_load_names_a_wrong_shape():
    arrays = frameworks.torch.to_arrays(torch.nn.Linear(4, 2))
    with pytest.raises(RecordError, match=r"'weight'\] has shape \(2, 4\).*needs \(2, 3\)"):
        frameworks.torch.load_arrays(torch.nn.Linear(3, 2), arrays)


def test_bfloat16_error_names_the_key_and_the_fix():
    with pytest.raises(RecordError, match=r"ArrayRecord\['fc.weight'\].*tensor.float\(\)"):
        frameworks.torch.to_arrays({"fc.weight": torch.zeros(2, dtype=torch.bfloat16)})


def test_parameters_that_need_grad_are_detached():
    arrays = frameworks.torch.to_arrays({"w": torch.nn.Parameter(torch.ones(2))})
    assert arrays["w"].shape == (2,)
