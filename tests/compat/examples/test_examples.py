"""Flower's own examples, their import lines changed to ``pollinate.compat.flwr``, run as
their READMEs say (``flwr run .`` -> ``pollinate run .``; ``python script.py``).

- ``quickstart_sklearn``: Flower's quickstart-sklearn (message API). task.py's
  ``load_data`` reads sklearn's bundled iris in place of the ``hitorilabs/iris`` download.
- ``step_by_step``: Flower's flower-simulation-step-by-step-pytorch app (classic
  ``NumPyClient`` and a ``FedAvg`` subclass behind ``ClientApp(client_fn=...)`` and
  ``ServerApp(server_fn=...)``, node state in ``context.state``, a JSON string metric).
  task.py's ``load_data`` makes synthetic Fashion-MNIST-shaped data in place of the
  download; ``_standins`` stands in for wandb, HuggingFace ``datasets`` and torchvision.
- ``quickstart_xgboost``: Flower's quickstart-xgboost (message API, ``FedXgbBagging``).
  task.py's ``load_data`` reads sklearn's bundled breast cancer set in place of the
  ``jxie/higgs`` download.
- ``scripts/fedcustom.py``: the Flower 1.x tutorial "Build a strategy from scratch"
  (a ``Strategy`` written from scratch, ``ServerApp(server_fn=...)``, ``run_simulation``),
  its model and data replaced by a numpy model on sklearn's digits.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from pollinate.cli._main import cli

HERE = Path(__file__).parent


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread, as the machine's cores are shared; restored afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _pollinate_run(app: str, out: Path, *args: str) -> tuple[dict[str, Any], str]:
    """``pollinate run APP --json --out OUT ...``: the JSON summary and what went to stderr."""
    done = CliRunner().invoke(
        cli, ["run", str(HERE / app), "--json", "--out", str(out), *args], catch_exceptions=False
    )
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _rounds(summary: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["round"]: r for r in summary["rounds"]}


def test_build_a_strategy_from_scratch_runs_as_a_script(capsys):
    runpy.run_path(str(HERE / "scripts" / "fedcustom.py"), run_name="__main__")
    captured = capsys.readouterr()
    fits = [line for line in captured.out.splitlines() if "] fit, config:" in line]
    assert len(fits) == 30  # FedCustom samples all 10 nodes in each of 3 rounds
    assert sum("{'lr': 0.003}" in line for line in fits) == 15  # half get the higher lr
    assert "round 3/3: train 10 ok, evaluate 10 ok" in captured.err
