"""A small app folder for tests that submit runs to a link: its code travels as a bundle."""

import threading
from pathlib import Path

from pollinate.deploy import Backoff, run_node

PYPROJECT = """\
[project]
name = "{name}"
version = "0.1.0"

[tool.pollinate.app.components]
serverapp = "tinyapp.apps:server"
clientapp = "tinyapp.apps:client"

[tool.pollinate.app.config]
num-server-rounds = 2
sleep-s = 0.0
step = {step}

[tool.pollinate.federations.{federation}]
address = "127.0.0.1:{port}"
insecure = true
min-nodes = 2
wait-s = 30
"""

APPS = '''\
"""Each node adds ``step`` to the model; the server runs FedAvg."""
import time

import numpy as np

from pollinate import ArrayRecord, ClientApp, FedAvg, MetricRecord, RecordDict, ServerApp

client = ClientApp()
server = ServerApp()


@client.train()
def train(msg, context):
    time.sleep(float(context.run_config["sleep-s"]))
    step = float(context.run_config["step"])
    new = {k: a.numpy() + step for k, a in msg.content.arrays().items()}
    metrics = MetricRecord({"num-examples": 1})
    return msg.reply(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}))


@client.evaluate()
def evaluate(msg, context):
    metrics = MetricRecord({"num-examples": 1, "accuracy": 0.5})
    return msg.reply(RecordDict({"metrics": metrics}))


@server.main()
def main(grid, context):
    strategy = FedAvg(min_available_nodes=2, min_train_nodes=2)
    rounds = int(context.run_config["num-server-rounds"])
    return strategy.start(grid, ArrayRecord({"w": np.zeros(3)}), num_rounds=rounds)
'''


def write_app(
    folder: Path, port: int = 0, step: float = 1.0, name: str = "tinyapp", federation: str = "prod"
) -> Path:
    """Write the app into ``folder`` (a deployed federation ``federation`` at ``port``)."""
    (folder / "tinyapp").mkdir(parents=True, exist_ok=True)
    text = PYPROJECT.format(name=name, step=step, port=port, federation=federation)
    (folder / "pyproject.toml").write_text(text)
    (folder / "tinyapp" / "__init__.py").write_text("")
    (folder / "tinyapp" / "apps.py").write_text(APPS)
    return folder


def start_bare_nodes(
    port: int, count: int, cache: Path, give_up_s: float = 10, **kwargs
) -> list[threading.Thread]:
    """Nodes without an app of their own, in threads: they fetch each run's app."""
    threads = []
    for partition in range(count):
        thread = threading.Thread(
            target=run_node,
            args=(f"127.0.0.1:{port}", None),
            kwargs={
                "node_config": {"partition-id": partition},
                "backoff": Backoff(initial_s=0.05, max_s=0.2, give_up_s=give_up_s),
                "app_cache": cache / f"node{partition}",
                **kwargs,
            },
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    return threads
