import numpy as np
import pytest

from pollinate import ArrayRecord, ClientApp, MetricRecord, RecordDict
from pollinate.simulation import ClientAppSource, InlineBackend, SimulationGrid


@pytest.fixture
def global_arrays():
    """A small two-layer global model of zeros."""
    return ArrayRecord({"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)})


@pytest.fixture
def good_reply(global_arrays):
    """A train handler answering with arrays of `value` and `num_examples` as the weight."""

    def reply(msg, context=None, value=1.0, num_examples=10):
        arrays = ArrayRecord(
            {k: np.full(a.shape, value, a.dtype) for k, a in global_arrays.items()}
        )
        metrics = MetricRecord({"num-examples": num_examples, "loss": value})
        return msg.reply(RecordDict({"arrays": arrays, "metrics": metrics}))

    return reply


@pytest.fixture
def make_grid():
    """A simulation grid over `num_nodes` nodes whose train handler is `train(msg, context)`."""
    backends = []

    def make(train, num_nodes=3, evaluate=None):
        app = ClientApp()
        app.train()(train)
        if evaluate is not None:
            app.evaluate()(evaluate)
        backend = InlineBackend()
        backend.start(ClientAppSource(app=app))
        backends.append(backend)
        return SimulationGrid(backend, num_nodes, run_id=1, run_config={})

    yield make
    for backend in backends:
        backend.close()
