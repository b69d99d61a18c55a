"""A small DP app: privacy.epsilon in every round of result.rounds and metrics.jsonl."""

import json

import numpy as np

from pollinate import ArrayRecord, FedAvg, ServerApp
from pollinate.privacy import dp_adaptive_clip, dp_fixed_clip, epsilon
from pollinate.simulation import run_simulation
from pollinate.strategy import chain, server_momentum

from ._apps import pulling_app


def _server_app(piece, rounds=3):
    app = ServerApp()

    @app.main()
    def main(grid, context):
        aggregation = chain(piece, server_momentum(0.5))
        strategy = FedAvg(fraction_train=0.5, fraction_evaluate=0.0, aggregation=aggregation)
        return strategy.start(grid, ArrayRecord({"w": np.zeros(8, np.float32)}), num_rounds=rounds)

    return app


def test_run_simulation_reports_epsilon_each_round_in_the_result_and_metrics_jsonl(tmp_path):
    out = tmp_path / "run"
    result = run_simulation(
        _server_app(dp_fixed_clip(1.0, 1.1, seed=0)),
        pulling_app(),
        num_nodes=20,
        out_dir=out,
        verbose=False,
    )
    want = [epsilon([(0.5, 1.1)] * t, 1e-5) for t in (1, 2, 3)]
    assert [r.train.metrics["privacy.epsilon"] for r in result.rounds] == want
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [line for line in lines if "privacy.epsilon" in json.dumps(line)]
    assert len(logged) == 3


def test_a_seeded_dp_simulation_repeats_bit_for_bit(tmp_path):
    def once():
        piece = dp_adaptive_clip(target_epsilon=4.0, num_rounds=3, count_noise_std=2.0, seed=9)
        return run_simulation(_server_app(piece), pulling_app(), num_nodes=20, verbose=False)

    first, again = once(), once()
    assert first.arrays == again.arrays
    assert first.rounds[-1].train.metrics == again.rounds[-1].train.metrics
    assert first.rounds[-1].train.metrics["privacy.epsilon"] <= 4.0
