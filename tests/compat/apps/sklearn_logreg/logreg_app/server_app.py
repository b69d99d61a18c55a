"""logreg_app's ServerApp: FedAvg over every node, the final model pickled to disk."""

import pickle

from logreg_app.task import new_model, set_weights, weights
from pollinate.compat.flwr.app import ArrayRecord, Context
from pollinate.compat.flwr.serverapp import Grid, ServerApp
from pollinate.compat.flwr.serverapp.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Average every node's weights each round; save the result as logreg.pkl."""
    config = context.run_config
    model = new_model(config["regularisation"], config["local-iterations"])
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=1.0)
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(weights(model)),
        num_rounds=config["num-server-rounds"],
    )
    set_weights(model, result.arrays.to_numpy_ndarrays())
    with open("logreg.pkl", "wb") as out:
        pickle.dump(model, out)
