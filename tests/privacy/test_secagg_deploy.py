"""SecAgg+ deployed: a server and five nodes over the link on 127.0.0.1 with TLS."""

import threading

import numpy as np

import pollinate
from pollinate import ArrayRecord, ClientApp, MetricRecord, RecordDict
from pollinate.deploy import make_dev_certs
from pollinate.privacy import SecAggPlus, secaggplus_mod
from pollinate.strategy import FedAvg

CLIP, LEVELS = 8.0, 2**20  # every delta (1..5) fits: none is clipped
STEP = 2 * CLIP / (LEVELS - 1)


def node_app(partition: int) -> ClientApp:
    """Adds ``partition + 1`` to every weight and reports it as its example count."""
    app = ClientApp(mods=[secaggplus_mod])

    @app.train()
    def train(msg, context):
        arrays = msg.content.arrays()
        out = ArrayRecord({k: a.numpy() + (partition + 1) for k, a in arrays.items()})
        metrics = MetricRecord({"num-examples": partition + 1})
        return msg.reply(RecordDict({"arrays": out, "metrics": metrics}))

    return app


def test_secagg_runs_over_the_link_with_tls(tmp_path):
    certs = make_dev_certs(tmp_path / "certs")
    listening = threading.Event()
    port: list[int] = []
    outcome = {}
    strategy = FedAvg(
        secure_aggregation=SecAggPlus(5, 3, clipping_range=CLIP, quantization_range=LEVELS),
        min_train_nodes=5,
        min_available_nodes=5,
        fraction_evaluate=0.0,
    )

    def serve():
        outcome["result"] = pollinate.start_server(
            "127.0.0.1:0",
            strategy=strategy,
            num_rounds=2,
            initial_arrays=ArrayRecord({"w": np.zeros((2, 3), np.float32)}),
            certs=certs.ca_cert.parent,
            min_nodes=5,
            wait_s=30,
            out_dir=tmp_path / "run",
            on_listening=lambda p: (port.append(p), listening.set()),
            verbose=False,
        )

    server = threading.Thread(target=serve)
    server.start()
    assert listening.wait(10)
    nodes = [
        threading.Thread(
            target=pollinate.start_client,
            args=(f"localhost:{port[0]}", node_app(partition)),
            kwargs={"root_cert": certs.ca_cert, "give_up_s": 10},
        )
        for partition in range(5)
    ]
    for node in nodes:
        node.start()
    server.join(120)
    for node in nodes:
        node.join(10)
        assert not node.is_alive()
    result = outcome["result"]
    # Weighted by 1..5, each round adds sum(w^2)/sum(w) = 55/15.
    assert np.max(np.abs(result.arrays["w"].numpy() - 2 * 55 / 15)) <= 2 * STEP + 1e-5
    assert [r.train.num_ok for r in result.rounds if r.train] == [5, 5]
    assert result.rounds[-1].train.metrics["secagg.count"] == 5
