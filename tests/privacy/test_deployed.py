"""Over a real link on 127.0.0.1 with TLS: nodes clip, the server adds noise and accounts."""

import threading

import numpy as np
import pytest

from pollinate import ArrayRecord, ClientApp, FedAvg, MetricRecord, RecordDict
from pollinate.deploy import (
    Backoff,
    Link,
    channel_credentials,
    make_dev_certs,
    run_node,
    server_credentials,
)
from pollinate.privacy import dp_fixed_clip, epsilon, fixed_clipping_mod
from pollinate.strategy import chain


def _node_app():
    """A node that moves every weight by 10 (delta norm 20 over 4 weights): clipped to 0.5."""
    app = ClientApp(mods=[fixed_clipping_mod])

    @app.train()
    def train(msg, context):
        new = {k: a.numpy() + 10.0 for k, a in msg.content.arrays().items()}
        metrics = MetricRecord({"num-examples": 10})
        return msg.reply(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}))

    return app


@pytest.fixture
def tls_link(tmp_path):
    """A TLS link on a free 127.0.0.1 port, and a function that starts node threads."""
    certs = make_dev_certs(tmp_path / "certs")
    link = Link("127.0.0.1:0", credentials=server_credentials(certs.ca_cert.parent))
    link.start()
    threads = []

    def start(count):
        for partition in range(count):
            thread = threading.Thread(
                target=run_node,
                args=(f"localhost:{link.port}", _node_app()),
                kwargs={
                    "node_config": {"partition-id": partition},
                    "credentials": channel_credentials(certs.ca_cert),
                    "backoff": Backoff(initial_s=0.05, max_s=0.2, give_up_s=5),
                },
                daemon=True,
            )
            thread.start()
            threads.append(thread)

    yield link, start
    link.stop(grace_s=0.5)
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive(), "a node did not leave after the link's goodbye"


def test_nodes_clip_over_tls_and_the_server_noises_and_accounts(tls_link):
    link, start = tls_link
    start(4)
    grid = link.grid(run_id=1, run_config={})
    grid.wait_for_nodes(4, timeout_s=20)
    piece = dp_fixed_clip(0.5, noise_multiplier=1e-9, clipped_on="nodes", seed=0)
    strategy = FedAvg(
        fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=4, aggregation=chain(piece)
    )
    result = strategy.start(grid, ArrayRecord({"w": np.zeros(4)}), num_rounds=2)
    # Each node's delta is clipped to norm 0.5 (0.25 per weight); 4 of 4 expected nodes.
    np.testing.assert_allclose(result.arrays["w"].numpy(), np.full(4, 0.5), atol=1e-6)
    assert all(r.train.num_ok == 4 and not r.train.failures for r in result.rounds)
    assert result.rounds[-1].train.metrics["privacy.epsilon"] == epsilon([(1.0, 1e-9)] * 2, 1e-5)
