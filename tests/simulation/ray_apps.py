"""ClientApps the Ray backend's tests run on their cluster, importable as 'ray_apps:NAME'."""

import os
from pathlib import Path

import ray
from fixture_apps import _noisy_update

from pollinate import ClientApp

where = ClientApp()


@where.train()
def _note_where_it_ran(msg, context):
    """The noisy update, leaving a file named after the Ray node's label and the device seen.

    The test cluster's nodes carry a custom resource each (``head_node``, ``second_node``):
    the file ``<label>-<device>-<CUDA_VISIBLE_DEVICES>`` in the train config's ``where-dir``
    says a task ran there, and what it was given.
    """
    node_id = ray.get_runtime_context().get_node_id()
    (node,) = [n for n in ray.nodes() if n["NodeID"] == node_id]
    (label,) = [name for name in node["Resources"] if name.endswith("_node")]
    device = context.node_config["device"]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    (Path(msg.content["config"]["where-dir"]) / f"{label}-{device}-{visible}").touch()
    return _noisy_update(msg, context)
