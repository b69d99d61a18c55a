"""Kill the link at each point where it writes, restart it: every round's files, exactly once.

The link and its nodes run in one process (``crash_app.py``); a fault point (see
``pollinate._durable``) SIGKILLs it at the chosen write. Started again with the same
database, the run resumes and must end with the files and model an uninterrupted run has.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pollinate.deploy._store import Store
from pollinate.server import load_arrays

from .crash_app import ROUNDS

CRASH_APP = Path(__file__).with_name("crash_app.py")

POINTS = [
    ("write.written", "*/metrics.jsonl", 0),  # a fresh run's empty metrics.jsonl
    ("write.start", "*/checkpoints/round-0000.npz", 0),
    ("evaluate", "round-0000", 0),  # round 0's centralized evaluation
    ("append.written", "*/metrics.jsonl", 0),  # round 0's line, before its fsync
    ("store.write", "rounds/*/round-0000", 0),  # before round 0 is committed
    ("write.start", "*/checkpoints/round-0002.npz", 0),
    ("write.written", "*/checkpoints/round-0002.npz", 0),
    ("write.renamed", "*/checkpoints/round-0002.npz", 0),
    ("evaluate", "round-0002", 0),
    ("append.written", "*/metrics.jsonl", 2),  # round 2's line
    ("write.written", "*.models/*/round-0002.npz", 0),  # the database's copy of the model
    ("store.write", "rounds/*/round-0002", 0),  # files durable, round not committed
    ("store.committed", "rounds/*/round-0002", 0),  # committed, older model not yet removed
    ("store.write", "rounds/*/round-0003", 0),  # the last round
    ("write.written", "*/model.npz", 0),
    ("write.renamed", "*/model.npz", 0),
    ("store.write", "runs/*/finished", 0),  # everything written, the run not yet finished
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The files of the same run, never interrupted."""
    folder = tmp_path_factory.mktemp("reference")
    _serve(folder)
    return folder / "out"


@pytest.mark.slow
@pytest.mark.parametrize(("point", "subject", "after"), POINTS, ids=lambda p: str(p))
def test_a_link_killed_at_a_write_resumes_with_every_file_exactly_once(
    tmp_path, reference, point, subject, after
):
    killed = _serve(tmp_path, point, subject, after)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    _serve(tmp_path)
    _assert_same_run(tmp_path / "out", reference)
    assert _leftovers(tmp_path) == []
    (row,) = Store(tmp_path / "link.db").runs()
    assert row.status == "finished"


@pytest.mark.slow
def test_a_resumed_run_writes_again_what_is_missing_and_cleans_temp_files(tmp_path, reference):
    killed = _serve(tmp_path, "store.committed", "rounds/*/round-0002")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    out = tmp_path / "out"
    (out / "checkpoints" / "round-0002.npz").unlink()  # lost (a disk replaced, say)
    (out / "metrics.jsonl").write_text('{"round": 0}\n{"round": 1, "trunc')  # spoiled
    strays = [
        out / "checkpoints" / "round-0003.npz.tmp",
        out / "model.npz.tmp",
        next((tmp_path / "link.db.models").iterdir()) / "round-0003.npz.tmp",
        tmp_path / "link.db.apps" / "abc.partial",
    ]
    for stray in strays:
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"half")
    _serve(tmp_path)
    _assert_same_run(out, reference)
    assert _leftovers(tmp_path) == []


def _serve(folder, point=None, subject="*", after=0):
    """Run crash_app.py on ``folder``'s database and run folder, armed to die at ``point``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLLINATE_FAULT")}
    if point is not None:
        env |= {
            "POLLINATE_FAULT_AT": point,
            "POLLINATE_FAULT_ON": subject,
            "POLLINATE_FAULT_AFTER": str(after),
        }
    done = subprocess.run(
        [sys.executable, str(CRASH_APP), str(folder / "link.db"), str(folder / "out")],
        env=env,
        start_new_session=True,  # the fault kills its process group, not this one
        capture_output=True,
        text=True,
        timeout=120,
    )
    if point is None:
        assert done.returncode == 0, done.stderr
    return done


def _assert_same_run(out, reference):
    """Each round's line once, with the same metrics; each checkpoint and the model equal."""
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [line["round"] for line in lines] == list(range(ROUNDS + 1))
    for line, want in zip(lines, expected, strict=True):
        assert (line["train"], line["server"]) == (want["train"], want["server"])
    names = [f"checkpoints/round-{r:04d}.npz" for r in range(ROUNDS + 1)]
    for name in [*names, "model.npz"]:
        got, want = load_arrays(out / name), load_arrays(reference / name)
        assert list(got) == list(want), name
        for key in want:
            np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=name)


def _leftovers(folder):
    return sorted(p for p in folder.rglob("*") if p.suffix in (".tmp", ".partial"))
