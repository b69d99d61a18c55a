"""bagging_app's ServerApp: FedXgbBagging from an empty ensemble; saves the final one."""

import numpy as np

from bagging_app.task import booster_params, from_bytes
from pollinate.compat.flwr.app import ArrayRecord, Context
from pollinate.compat.flwr.serverapp import Grid, ServerApp
from pollinate.compat.flwr.serverapp.strategy import FedXgbBagging

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Bag the sampled nodes' trees for ``num-server-rounds``; save them as ensemble.json."""
    config = context.run_config
    strategy = FedXgbBagging(
        fraction_train=config["fraction-train"], fraction_evaluate=config["fraction-evaluate"]
    )
    empty = ArrayRecord([np.zeros(0, dtype=np.uint8)])  # the nodes grow the first trees
    result = strategy.start(grid=grid, initial_arrays=empty, num_rounds=config["num-server-rounds"])
    ensemble = from_bytes(result.arrays["0"].numpy(), booster_params(config))
    ensemble.save_model("ensemble.json")
