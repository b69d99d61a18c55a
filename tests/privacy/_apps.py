"""Helpers of the DP tests: an app whose nodes pull the model toward their id, and a runner."""

import numpy as np

from pollinate import ArrayRecord, ClientApp, Context, MetricRecord, RecordDict, ServerApp
from pollinate.server import run_server_app

CONTEXT = Context(1, 0, {}, {}, RecordDict())


def pulling_app(mods=(), step=0.5):
    """Nodes move the model toward their own id (each node's delta has norm ~ step x id x 2)."""
    app = ClientApp(mods=mods)

    @app.train()
    def train(msg, context):
        arrays = msg.content.arrays()
        new = {
            k: (a.numpy() + step * (context.node_id - a.numpy())).astype(a.dtype)
            for k, a in arrays.items()
        }
        metrics = MetricRecord({"num-examples": context.node_id})
        return msg.reply(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}))

    return app


def run(strategy, grid, rounds, initial=None, resume=None, observers=()):
    """``strategy`` for ``rounds`` rounds on ``grid`` from ``initial`` (default 4 zeros)."""
    app = ServerApp()
    start = initial if initial is not None else ArrayRecord({"w": np.zeros(4, np.float32)})

    @app.main()
    def main(grid, context):
        return strategy.start(grid, start, num_rounds=rounds)

    return run_server_app(app, grid, CONTEXT, observers=observers, resume=resume)
