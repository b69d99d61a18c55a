"""Flower's SecAgg+ on the workload of benchmarks/secagg.py, for the figures beside ours.

Needs Flower, which pollinate does not depend on: run it from a throwaway venv,
``python -m venv /tmp/flwrvenv && /tmp/flwrvenv/bin/pip install flwr``, then
``/tmp/flwrvenv/bin/python benchmarks/secagg_flower.py NODES PARAMS PAIRS``.

Flower's simulation engine needs Ray, so this drives Flower's own ``SecAggPlusWorkflow``
(17 shares, threshold 9, max_weight 100, its other defaults) and ``secaggplus_mod``
through a minimal in-memory Grid that hands each message to the ClientApp in turn, as
pollinate's inline backend does; each node gets a deep copy, as it would over a wire.
Plain and secure fit rounds alternate; no node drops (Flower's workflow is measured at 0%).
"""

from __future__ import annotations

import copy
import statistics
import sys
import time

import flwr.compat.common.recorddict_compat as compat
import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import ConfigRecord, ndarrays_to_parameters
from flwr.server import ServerConfig
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.server.workflow.default_workflows import default_fit_workflow
from flwr.serverapp.grid import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

NODE_CPU: dict[int, float] = {}


class Add(NumPyClient):
    """The model plus 0.01, weighted by 1 + node id mod 50, as in benchmarks/secagg.py."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def fit(self, parameters, config):
        return [p + np.float32(0.01) for p in parameters], 1 + self.node_id % 50, {}


def client_fn(context: Context):
    return Add(context.node_id).to_client()


SECURE_APP = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
PLAIN_APP = ClientApp(client_fn=client_fn)  # Flower's mod refuses non-SecAgg+ messages


class InMemoryGrid(Grid):
    """Each message goes to its node's ClientApp at once; node CPU time is counted."""

    def __init__(self, num_nodes: int) -> None:
        self.contexts = {
            i: Context(run_id=1, node_id=i, node_config={}, state=RecordDict(), run_config={})
            for i in range(1, num_nodes + 1)
        }
        self._run = Run.create_empty(1)
        self.app = PLAIN_APP

    def set_run(self, run):
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        return Message(
            content=content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id
        )

    def get_node_ids(self):
        return list(self.contexts)

    def push_messages(self, messages):
        raise NotImplementedError("send_and_receive only")

    def pull_messages(self, message_ids):
        raise NotImplementedError("send_and_receive only")

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            delivered = copy.deepcopy(message)
            began = time.process_time()
            replies.append(self.app(delivered, self.contexts[node]))
            NODE_CPU[node] = NODE_CPU.get(node, 0.0) + time.process_time() - began
        return replies


def fit_context(grid: InMemoryGrid, strategy: FedAvg, params: int) -> LegacyContext:
    """A server context at round 1 with every node registered and a zero model."""
    base = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    context = LegacyContext(base, config=ServerConfig(num_rounds=1), strategy=strategy)
    for node in grid.get_node_ids():
        context.client_manager.register(GridClientProxy(node, grid, 1))
    parameters = ndarrays_to_parameters([np.zeros(params, np.float32)])
    arrays = compat.parameters_to_arrayrecord(parameters, keep_input=True)
    context.state.array_records[MAIN_PARAMS_RECORD] = arrays
    config = ConfigRecord()
    config[Key.CURRENT_ROUND] = 1
    config[Key.START_TIME] = time.time()
    context.state.config_records[MAIN_CONFIGS_RECORD] = config
    return context


def main() -> None:
    given = [int(a) for a in sys.argv[1:4]]
    nodes, params, pairs = given + [100, 100_000, 1][len(given) :]
    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = 1, 1, 0
    grid = InMemoryGrid(nodes)
    strategy = FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=nodes, min_available_clients=nodes
    )
    secure = SecAggPlusWorkflow(num_shares=17, reconstruction_threshold=9, max_weight=100)
    plains, secures, cpus = [], [], []
    for _ in range(pairs):
        grid.app = PLAIN_APP
        began = time.perf_counter()
        default_fit_workflow(grid, fit_context(grid, strategy, params))
        plains.append(time.perf_counter() - began)
        NODE_CPU.clear()
        grid.app = SECURE_APP
        began = time.perf_counter()
        secure(grid, fit_context(grid, strategy, params))
        secures.append(time.perf_counter() - began)
        cpus.append(statistics.median(NODE_CPU.values()))
    ratio = statistics.median(s / p for p, s in zip(plains, secures, strict=True))
    print(
        f"Flower SecAgg+ {nodes} nodes {params} params 0% dropout: round plain "
        f"{statistics.median(plains):.2f} s  secure {statistics.median(secures):.2f} s  "
        f"ratio {ratio:.1f}x  node CPU secure {statistics.median(cpus) * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
