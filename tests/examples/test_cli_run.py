"""``pollinate run examples/quickstart --json`` end to end, in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.slow
def test_pollinate_run_trains_the_quickstart_and_keeps_its_results(
    quickstart, tmp_path: Path
) -> None:
    out_dir = tmp_path / "run"
    command = [sys.executable, "-m", "pollinate.cli", "run", str(quickstart.app_dir), "--json"]
    done = subprocess.run(
        [*command, "--out", str(out_dir)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])

    assert summary["final"]["server.accuracy"] >= 0.8
    assert Path(summary["out_dir"]) == out_dir.resolve()
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == [0, 1, 2, 3, 4, 5]
    with np.load(out_dir / "model.npz") as model:
        assert sorted(model.files) == ["hidden.bias", "hidden.weight", "out.bias", "out.weight"]
