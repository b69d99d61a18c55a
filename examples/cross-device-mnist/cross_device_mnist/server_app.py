"""The ServerApp: FedAvg over a sample of the nodes each round, evaluated after the last one."""

from __future__ import annotations

from cross_device_mnist import task
from pollinate import ArrayRecord, Context, FedAvg, Grid, Result, ServerApp, frameworks
from pollinate.errors import ConfigError

app = ServerApp()


class SampledFedAvg(FedAvg):
    """FedAvg whose train sample is W2's: ``nodes-per-round`` nodes by one run-long generator.

    Node ``i + 1`` of a simulation holds partition ``i``, so the ``i``-th of the sorted
    nodes is the floor's client ``i``; nodes train in the order drawn.
    """

    def __init__(self, sampler: task.RoundSampler, nodes_per_round: int) -> None:
        super().__init__(
            fraction_evaluate=0.0,
            min_train_nodes=1,
            min_available_nodes=nodes_per_round,
            seed=sampler.seed,
        )
        self.sampler = sampler
        self.nodes_per_round = nodes_per_round

    def sample_nodes(self, grid: Grid, server_round: int, phase: int) -> list[int]:
        """The round's draw from the run's generator, mapped onto the sorted node ids."""
        available = sorted(grid.wait_for_nodes(self.nodes_per_round, self.wait_for_nodes_s))
        chosen = self.sampler.sample(server_round, len(available), self.nodes_per_round)
        return [available[i] for i in chosen]


@app.main()
def main(grid: Grid, context: Context) -> Result:
    """W2: ``num-server-rounds`` rounds of FedAvg on ``nodes-per-round`` sampled nodes."""
    settings = task.Settings.from_config(context.run_config)
    settings.apply_threads()
    num_nodes = len(grid.node_ids())
    if settings.nodes_per_round > num_nodes:
        raise ConfigError(
            f"run config 'nodes-per-round' is {settings.nodes_per_round} but the federation has "
            f"{num_nodes} nodes: lower nodes-per-round or raise the federation's num-nodes"
        )
    test_set = task.load_test(settings.data_dir)  # fails here, before round 1, if data is missing
    strategy = SampledFedAvg(task.RoundSampler(settings.seed), settings.nodes_per_round)

    def evaluate(server_round: int, arrays: ArrayRecord) -> dict[str, float] | None:
        if server_round < settings.num_server_rounds:  # the floor scores the final model only
            return None
        net = task.Net()
        frameworks.torch.load_arrays(net, arrays)
        return task.scores(net, test_set)

    initial = frameworks.torch.to_arrays(task.initial_model())
    return strategy.start(
        grid, initial, num_rounds=settings.num_server_rounds, evaluate_fn=evaluate
    )
