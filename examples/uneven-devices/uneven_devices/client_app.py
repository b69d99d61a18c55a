"""The ClientApp: local SGD on this node's digits, declared once for every backend.

A ``VectorizedClient`` is an ordinary ClientApp when deployed or on the inline backend, and
trains a round's nodes together on the vectorized backend. The round's ``lr`` config (sent
by the ServerApp from ``learning-rate``) sets SGD's learning rate.
"""

from __future__ import annotations

from pollinate.simulation.vectorized import SGD, VectorizedClient
from uneven_devices import task

LOCAL_EPOCHS = 2
BATCH_SIZE = 8

client = VectorizedClient(
    model_fn=task.Net,
    data_fn=task.node_data,
    optimizer=SGD(lr=0.05, momentum=0.9),
    batch_size=BATCH_SIZE,
    epochs=LOCAL_EPOCHS,
    optimizer_config={"lr": "lr"},
)
app = client.client_app()
