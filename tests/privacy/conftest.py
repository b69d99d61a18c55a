import numpy as np
import pytest

from pollinate import ArrayRecord, ClientApp, Context, MetricRecord, RecordDict, ServerApp
from pollinate.server import run_server_app
from pollinate.simulation import ClientAppSource, InlineBackend, SimulationGrid

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


@pytest.fixture
def make_grid():
    """A simulation grid of ``num_nodes`` nodes running ``app``."""
    backends = []

    def make(app, num_nodes=10):
        backend = InlineBackend()
        backend.start(ClientAppSource(app=app))
        backends.append(backend)
        return SimulationGrid(backend, num_nodes, run_id=1, run_config={})

    yield make
    for backend in backends:
        backend.close()


def run(strategy, grid, rounds, initial=None, resume=None, observers=()):
    """``strategy`` for ``rounds`` rounds on ``grid`` from ``initial`` (default 4 zeros)."""
    app = ServerApp()
    start = initial if initial is not None else ArrayRecord({"w": np.zeros(4, np.float32)})

    @app.main()
    def main(grid, context):
        return strategy.start(grid, start, num_rounds=rounds)

    return run_server_app(app, grid, CONTEXT, observers=observers, resume=resume)
