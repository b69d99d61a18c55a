"""``benchmarks/compat_overhead.py --quick`` exits 0 and prints its figures (see test_quick)."""

from __future__ import annotations

import pytest

from .test_quick import NUMBER, has_line, run_quick

pytestmark = pytest.mark.slow


def test_compat_overhead() -> None:
    pytest.importorskip("torch")
    lines = run_quick("compat_overhead.py")
    assert lines[0].startswith("seed-002 workload: 10 clients, 40 examples each, 1 rounds")
    time = rf"{NUMBER} s \(accuracy {NUMBER}\)"
    assert has_line(lines, rf"pair 1: native {time}  compat {time}  ratio {NUMBER}")
    assert has_line(lines, rf"median ratio {NUMBER} over 1 pairs: goal <= 1\.05 (meets|MISSES)")
