"""ClientApps the Ray backend's tests run on their cluster, importable as 'ray_apps:NAME'."""

import os
from pathlib import Path

import ray
from fixture_apps import _noisy_update, initial_arrays

from pollinate import ClientApp, FedAvg, ServerApp, run_simulation

where = ClientApp()
WARMED_ON: list[str] = []
"""The device each warm-up in this actor's process was given."""


@where.warmup()
def _warm(context):
    WARMED_ON.append(context.node_config["device"])


@where.train()
def _note_where_it_ran(msg, context):
    """The noisy update, leaving a file named after the Ray node's label and the device seen.

    The test cluster's nodes carry a custom resource each (``head_node``, ``second_node``):
    the file ``<label>-<device>-<CUDA_VISIBLE_DEVICES>`` in the train config's ``where-dir``
    says a task ran there, and what it was given; ``warmed-<label>-<devices>`` says on which
    devices that actor's warm-up ran.
    """
    node_id = ray.get_runtime_context().get_node_id()
    (node,) = [n for n in ray.nodes() if n["NodeID"] == node_id]
    (label,) = [name for name in node["Resources"] if name.endswith("_node")]
    device = context.node_config["device"]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    folder = Path(msg.content["config"]["where-dir"])
    (folder / f"{label}-{device}-{visible}").touch()
    (folder / f"warmed-{label}-{','.join(WARMED_ON)}").touch()
    return _noisy_update(msg, context)


raising = ClientApp()


@raising.train()
def _raise_on_node_2(msg, context):
    if context.node_id == 2:
        raise ValueError("node 2 cannot train today")
    return _noisy_update(msg, context)


def run_on_local_ray():
    """Run 2 nodes for a round on a local Ray (ray_address ""): what the test then checks."""
    server, seen = ServerApp(), {}

    @server.main()
    def main(grid, context):
        seen["gcs"] = ray.get_runtime_context().gcs_address
        strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=1)
        return strategy.start(grid, initial_arrays(), num_rounds=1)

    result = run_simulation(
        server,
        "fixture_apps:noisy",
        num_nodes=2,
        backend="ray",
        verbose=False,
        backend_options={"num_actors": 1},
        app_dir=str(Path(__file__).parent),
    )
    ok = result.rounds[-1].train.num_ok
    return {"ok": ok, "gcs": seen["gcs"], "initialized_after": ray.is_initialized()}
