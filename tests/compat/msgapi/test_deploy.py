"""A Flower-style app over pollinate's deployment (gRPC): its replies travel as they are."""

from __future__ import annotations

import threading

import numpy as np

import pollinate

from . import _numpy_app

STEP = (1 * 10 + 2 * 20 + 3 * 30) / 60


def test_a_flower_style_app_runs_on_a_deployed_server_and_nodes(tmp_path) -> None:
    listening = threading.Event()
    port: list[int] = []
    outcome = {}

    def serve() -> None:
        outcome["result"] = pollinate.start_server(
            "127.0.0.1:0",
            server_app=_numpy_app.server,
            run_config={"num-server-rounds": 2},
            insecure=True,
            min_nodes=3,
            wait_s=30,
            on_listening=lambda p: (port.append(p), listening.set()),
        )

    server = threading.Thread(target=serve)
    server.start()
    assert listening.wait(10)
    nodes = [
        threading.Thread(
            target=pollinate.start_client,
            args=(f"127.0.0.1:{port[0]}", _numpy_app.app),
            kwargs={"node_config": {"partition-id": p}, "insecure": True, "give_up_s": 10},
        )
        for p in range(3)
    ]
    for node in nodes:
        node.start()
    server.join(60)
    for node in nodes:
        node.join(10)
        assert not node.is_alive()
    result = outcome["result"]
    np.testing.assert_allclose(result.arrays["0"].numpy(), np.full((2, 3), 2 * STEP))
    assert result.rounds[-1].train.metrics["calls"] == 2  # each node's state persisted
