import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from pollinate import frameworks  # noqa: E402
from pollinate.errors import RecordError  # noqa: E402


def _model(name: str = "mlp") -> "keras.Model":
    return keras.Sequential(
        [
            keras.Input(shape=(4,)),
            keras.layers.Dense(3, name="hidden"),
            keras.layers.Dense(2, name="out"),
        ],
        name=name,
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_round_trip_names_weights_by_path():
    model = _model()
    arrays = frameworks.keras.to_arrays(model)
    assert list(arrays)[:2] == ["mlp/hidden/kernel", "mlp/hidden/bias"]
    clone = frameworks.keras.load_arrays(_model(), arrays)
    for a, b in zip(model.get_weights(), clone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_load_refuses_another_models_weights_by_name():
    arrays = frameworks.keras.to_arrays(_model("other"))
    with pytest.raises(RecordError, match="missing 'mlp/hidden/kernel'"):
        frameworks.keras.load_arrays(_model(), arrays)
