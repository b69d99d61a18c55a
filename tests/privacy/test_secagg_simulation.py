"""The same SecAgg+ app in simulation on the inline and process backends."""

import numpy as np
import pytest

from pollinate import ArrayRecord
from pollinate.privacy import SecAggPlus
from pollinate.simulation import run_simulation
from pollinate.strategy import FedAvg

from .secagg_apps import app, delta_of

SHAPES = {"w": (4, 3), "b": (3,)}
CLIP, LEVELS = 4.0, 2**20
STEP = 2 * CLIP / (LEVELS - 1)


@pytest.mark.parametrize("backend", ["inline", "process"])
def test_secagg_runs_the_same_app_on_each_backend(backend, tmp_path):
    start = ArrayRecord({k: np.zeros(s, np.float32) for k, s in SHAPES.items()})
    strategy = FedAvg(
        secure_aggregation=SecAggPlus(5, 3, clipping_range=CLIP, quantization_range=LEVELS),
        min_train_nodes=7,
        min_available_nodes=7,
        fraction_evaluate=0.0,
        train_config={"delta-seed": 2},
    )
    options = {"num_workers": 2} if backend == "process" else None
    result = run_simulation(
        client_app=app,
        strategy=strategy,
        num_rounds=2,
        num_nodes=7,
        initial_arrays=start,
        backend=backend,
        backend_options=options,
        out_dir=tmp_path,
        verbose=False,
    )
    nodes = np.arange(1, 8)
    for name, shape in SHAPES.items():
        mean = sum(n * delta_of(int(n), 2, shape) for n in nodes) / nodes.sum()
        assert np.max(np.abs(result.arrays[name].numpy() - 2 * mean)) <= 2 * STEP + 1e-6
    assert [r.train.num_ok for r in result.rounds if r.train] == [7, 7]
