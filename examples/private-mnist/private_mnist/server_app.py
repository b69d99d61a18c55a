"""The server: Poisson-samples devices, runs SecAgg+ on their clipped updates, adds DP noise.

It sees only the sum of each round's clipped updates (SecAgg+), adds Gaussian noise of
``noise-multiplier x clip-norm`` to it and accounts the run's (epsilon, delta), which each
round's metrics and the run summary show.
"""

from __future__ import annotations

from pollinate import ArrayRecord, Context, FedAvg, Grid, Result, ServerApp, frameworks
from pollinate.privacy import SecAggPlus, dp_fixed_clip
from pollinate.strategy import chain, server_momentum
from private_mnist import task

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> Result:
    """``num-server-rounds`` rounds of DP-FedAvg with secure aggregation; central evaluation."""
    s = task.Settings.from_config(context.run_config)
    train_set, test_set = task.load_data(s.data_dir)  # fails here, before round 1, if missing
    seed = None if s.seed < 0 else s.seed
    dp = dp_fixed_clip(
        s.clip_norm, s.noise_multiplier, delta=s.delta, clipped_on="nodes", seed=seed
    )
    strategy = FedAvg(
        fraction_train=s.fraction_train,
        fraction_evaluate=0.0,
        min_train_nodes=s.num_shares,
        min_available_nodes=len(grid.node_ids()),
        aggregation=chain(dp, server_momentum(1.0, s.server_momentum)),
        # a clipped delta has no coordinate above the clip: SecAgg+ quantizes within it
        secure_aggregation=SecAggPlus(
            s.num_shares, s.reconstruction_threshold, clipping_range=s.clip_norm, seed=seed
        ),
    )

    def evaluate(server_round: int, arrays: ArrayRecord) -> dict[str, float]:
        model = task.make_model(train_set.x.shape[1], s.hidden)
        frameworks.torch.load_arrays(model, arrays)
        return task.scores(model, test_set)

    initial = frameworks.torch.to_arrays(task.make_model(train_set.x.shape[1], s.hidden))
    return strategy.start(grid, initial, num_rounds=s.num_server_rounds, evaluate_fn=evaluate)
