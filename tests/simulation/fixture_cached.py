"""A ClientApp for test_process_cache.py, importable by workers as 'fixture_cached:editing'."""

import numpy as np

from pollinate import ArrayRecord, ClientApp, MetricRecord, RecordDict

editing = ClientApp()


@editing.train()
def _sum_then_edit(msg, context):
    """Reply with the received model's sum, then spoil the received record in place."""
    arrays = msg.content["arrays"]
    total = float(sum(a.numpy().sum() for a in arrays.values()))
    arrays["w"] = np.full((4, 3), 1e6, np.float32)  # what a careless app might do
    del arrays["b"]
    reply = ArrayRecord({"w": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32)})
    metrics = MetricRecord({"num-examples": 1, "sum": total})
    return msg.reply(RecordDict({"arrays": reply, "metrics": metrics}))
