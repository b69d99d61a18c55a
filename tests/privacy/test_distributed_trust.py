"""Distributed trust: the nodes clip, SecAgg+ sums, the server adds noise and accounts.

A seeded secure run must equal the same seeded chain without SecAgg+ (same Poisson sample,
same noise) within SecAgg+'s quantization error: the server saw only the sum, yet released
the same DP model, summed without the nodes' weights.
"""

import numpy as np
import pytest

from pollinate import ArrayRecord
from pollinate.privacy import SecAggPlus, dp_fixed_clip, epsilon
from pollinate.simulation import run_simulation
from pollinate.strategy import FedAvg, chain

from .trust_apps import SHAPE, clipping_app, secure_app

CLIP, Z, Q, NODES = 1.0, 0.3, 0.5, 30
RANGE, LEVELS = 2.0, 2**16
STEP = 2 * RANGE / (LEVELS - 1)
"""SecAgg+'s quantization step: the secure mean is within one step of the exact mean."""


def strategy(secure: bool, seed: int = 4) -> FedAvg:
    piece = dp_fixed_clip(CLIP, Z, clipped_on="nodes", seed=seed)
    protocol = SecAggPlus(5, 3, clipping_range=RANGE, quantization_range=LEVELS, seed=1)
    return FedAvg(
        fraction_train=Q,
        fraction_evaluate=0.0,
        min_train_nodes=5,
        min_available_nodes=NODES,
        aggregation=chain(piece),
        secure_aggregation=protocol if secure else None,
    )


def simulate(secure: bool, backend: str = "inline", rounds: int = 2, tmp_path=None):
    options = {"num_workers": 2} if backend == "process" else None
    return run_simulation(
        client_app=secure_app if secure else clipping_app,
        strategy=strategy(secure),
        num_rounds=rounds,
        num_nodes=NODES,
        initial_arrays=ArrayRecord({"w": np.zeros(SHAPE)}),
        backend=backend,
        backend_options=options,
        out_dir=tmp_path,
        verbose=False,
    )


@pytest.mark.parametrize("backend", ["inline", "process"])
def test_a_secure_dp_run_equals_the_same_seeded_run_without_secagg(backend, tmp_path):
    secure = simulate(True, backend, tmp_path=tmp_path / "secure")
    plain = simulate(False, tmp_path=tmp_path / "plain")
    counts = [r.train.num_ok for r in secure.rounds if r.train]
    assert counts == [r.train.num_ok for r in plain.rounds if r.train]  # the same sample
    # Each round's secure mean is off by under a step a coordinate; the DP piece scales it by
    # count / expected, and the errors of the rounds add up.
    bound = sum(n / (Q * NODES) for n in counts) * STEP
    gap = np.max(np.abs(secure.arrays["w"].numpy() - plain.arrays["w"].numpy()))
    assert gap <= bound
    assert np.max(np.abs(plain.arrays["w"].numpy())) > 100 * bound  # the check has teeth
    for t, (s, p) in enumerate(zip(secure.rounds, plain.rounds, strict=True), 1):
        assert s.train.metrics["privacy.epsilon"] == epsilon([(Q, Z)] * t, 1e-5)
        assert s.train.metrics["privacy.epsilon"] == p.train.metrics["privacy.epsilon"]
        assert s.train.metrics["secagg.count"] == s.train.num_ok
