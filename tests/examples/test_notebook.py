"""examples/notebooks/skewed-mnist.ipynb, executed by a real Jupyter kernel (nbclient).

The kernel is this interpreter (a kernelspec written to a temporary JUPYTER_PATH) with the
checkout's ``src`` first on its path. The notebook runs on scikit-learn's digits always, and
on a slice of real MNIST where ``../shared`` has it; the outputs are checked: the live view
updated in place, the comparison's table, the plots as PNGs, and the demonstration's shape.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from .._shared import require_mnist

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "examples" / "notebooks" / "skewed-mnist.ipynb"
CLIENT_LINE = re.compile(
    r"client (\d) \(never saw ([\d,]+)\): alone ([\d.]+)%, federated ([\d.]+)% on those digits"
)


class _Recording(nbclient.NotebookClient):  # type: ignore[misc]
    """A NotebookClient that keeps the type of every message a cell's execution produced."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.message_types: list[str] = []

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        self.message_types.append(msg["msg_type"])
        return super().process_message(msg, cell, cell_index)


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``python3`` kernel that is this interpreter and imports this checkout's pollinate."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "pollinate test", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("POLLINATE_DATA", str(tmp_path / "pollinate-data"))  # not the home's
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # no deprecation warning about paths
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO / "src"), *filter(None, [path])]))


def execute(parameters: str) -> tuple[Any, list[str]]:
    """Run the notebook with ``parameters`` injected after its parameters cell."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "the notebook has one cell tagged 'parameters'"
    notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(parameters))
    client = _Recording(
        notebook,
        kernel_name="python3",
        timeout=240,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    return notebook, client.message_types


def outputs(notebook: Any) -> list[dict[str, Any]]:
    return [output for cell in notebook.cells for output in cell.get("outputs", [])]


def text_of(notebook: Any) -> str:
    return "".join(o.get("text", "") for o in outputs(notebook) if o["output_type"] == "stream")


def check_demonstration(notebook: Any, message_types: list[str], margin: float) -> None:
    """Live view updated in place, table and plots shown, federated far ahead on missing digits."""
    assert "update_display_data" in message_types  # the live table was redrawn in place
    html = [o["data"]["text/html"] for o in outputs(notebook) if "text/html" in o.get("data", {})]
    live = [h for h in html if "<b>pollinate</b>" in h]
    assert len(live) == 1 and "finished" in live[0] and "server.accuracy" in live[0]
    assert any("<th>model</th>" in h and "isolated-2" in h and "federated" in h for h in html)
    pngs = [o for o in outputs(notebook) if "image/png" in o.get("data", {})]
    assert len(pngs) >= 3  # curves and confusion at the end of the run, then two matrices
    clients = CLIENT_LINE.findall(text_of(notebook))
    assert [(p, saw) for p, saw, _, _ in clients] == [
        ("0", "1,3,7"),
        ("1", "2,5,8"),
        ("2", "4,6,9"),
    ]
    for _, _, alone, federated in clients:
        assert float(alone) == 0.0  # a model cannot predict digits it never saw
        assert float(federated) - float(alone) >= 100 * margin


@pytest.mark.slow
def test_notebook_runs_on_the_bundled_digits(kernel_env: None, tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    notebook, message_types = execute(f"DATA_DIR = {str(tmp_path)!r}  # no MNIST here")
    assert "bundled 8x8 digits instead" in text_of(notebook)
    check_demonstration(notebook, message_types, margin=0.5)


@pytest.mark.slow
def test_notebook_runs_on_real_mnist(kernel_env: None) -> None:
    """A slice of MNIST (3,000 images, 2 epochs a round) keeps it quick; the shape holds."""
    mnist = require_mnist()
    notebook, message_types = execute(
        f"DATA_DIR = {str(mnist)!r}\nTRAIN_EXAMPLES = 3000\nTEST_EXAMPLES = 1000\nLOCAL_EPOCHS = 2"
    )
    assert f"MNIST from {mnist}: the first 3,000 training, 1,000 test images" in text_of(notebook)
    check_demonstration(notebook, message_types, margin=0.6)


def test_the_notebook_is_saved_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
