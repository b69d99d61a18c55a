import pytest

from pollinate.simulation import ClientAppSource, InlineBackend, SimulationGrid


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
