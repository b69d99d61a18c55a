import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from pollinate.cli._main import cli

TINY_CLIENT = """
import numpy as np

from pollinate import ArrayRecord, ClientApp, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(msg, context):
    if str(context.node_id) in context.run_config["broken-nodes"].split():
        raise RuntimeError(f"node {context.node_id} broke")
    print("a print from a ClientApp")
    arrays = msg.content["arrays"]
    new = {k: a.numpy() + context.node_id for k, a in arrays.items()}
    metrics = MetricRecord({"num-examples": 10, "train-loss": 1.0})
    return msg.reply(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}))


@app.evaluate()
def evaluate(msg, context):
    metrics = MetricRecord({"num-examples": 10, "loss": 0.5, "accuracy": 0.75})
    return msg.reply(RecordDict({"metrics": metrics}))
"""

TINY_SERVER = """
import numpy as np

from pollinate import ArrayRecord, FedAvg, ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    if context.run_config["crash"]:
        helper_that_fails()
    print("a print from the ServerApp")
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=1)
    return strategy.start(
        grid,
        ArrayRecord({"w": np.zeros((2, 3), np.float32)}),
        num_rounds=context.run_config["num-server-rounds"],
        evaluate_fn=lambda server_round, arrays: {"accuracy": 0.5 + 0.1 * server_round},
    )


def helper_that_fails():
    raise ValueError("the server app failed on purpose")
"""

TINY_CONFIG = """
[tool.pollinate.app.config]
num-server-rounds = 2
learning-rate = 0.1
crash = false
broken-nodes = ""
"""

TINY_FEDERATIONS = """
[tool.pollinate.federations]
default = "local-simulation"

[tool.pollinate.federations.local-simulation]
num-nodes = 3
"""


@pytest.fixture(autouse=True)
def _forget_apps(tmp_path_factory):
    """Apps that in-process runs imported from temporary folders are forgotten after each test."""
    path = list(sys.path)
    yield
    sys.path[:] = path
    temporary = str(tmp_path_factory.getbasetemp())
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(temporary):
            del sys.modules[name]


@pytest.fixture
def make_app(tmp_path):
    """Write a tiny numpy app; returns its folder. Its package name is unique per call."""

    def make(
        *,
        components: str | None = None,
        config: str = TINY_CONFIG,
        federations: str = TINY_FEDERATIONS,
        server: str = TINY_SERVER,
        client: str = TINY_CLIENT,
    ) -> Path:
        package = f"tiny_{uuid.uuid4().hex[:8]}"
        app_dir = tmp_path / package
        (app_dir / package).mkdir(parents=True)
        (app_dir / package / "__init__.py").write_text("")
        (app_dir / package / "server_app.py").write_text(textwrap.dedent(server))
        (app_dir / package / "client_app.py").write_text(textwrap.dedent(client))
        if components is None:
            components = (
                "[tool.pollinate.app.components]\n"
                f'serverapp = "{package}.server_app:app"\n'
                f'clientapp = "{package}.client_app:app"\n'
            )
        (app_dir / "pyproject.toml").write_text(
            f'[project]\nname = "{package}"\n\n{components}\n{config}\n{federations}'
        )
        return app_dir

    return make


@pytest.fixture
def invoke():
    """Run the CLI in this process (fast); returns click's Result."""

    def run(*args: str):
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture
def run_cli():
    """Run ``python -m pollinate.cli`` in a subprocess; returns the CompletedProcess."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 120):
        env = {**os.environ, "COLUMNS": "200"}
        return subprocess.run(
            [sys.executable, "-m", "pollinate.cli", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=env,
            timeout=timeout,
            check=False,
        )

    return run
