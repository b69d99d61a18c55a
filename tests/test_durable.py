"""Durable writes: a crash or a full disk at any step leaves the old file or the new one."""

import errno
import logging

import pytest

from pollinate._durable import append_line, clean_temp_files, fault_point, write_file
from pollinate.deploy._store import RunRow, Store
from pollinate.errors import StorageError


def _arm(monkeypatch, point, subject="*", after=0):
    monkeypatch.setenv("POLLINATE_FAULT_AT", point)
    monkeypatch.setenv("POLLINATE_FAULT_ON", subject)
    monkeypatch.setenv("POLLINATE_FAULT", "enospc")
    monkeypatch.setenv("POLLINATE_FAULT_AFTER", str(after))


@pytest.mark.parametrize("point", ["write.start", "write.written"])
def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, point):
    path = tmp_path / "model.npz"
    path.write_bytes(b"good")
    _arm(monkeypatch, point)
    with pytest.raises(StorageError) as caught:
        write_file(path, lambda f: f.write(b"new"))
    assert str(caught.value) == f"no space left on device writing {path}"
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert path.read_bytes() == b"good" and list(tmp_path.iterdir()) == [path]
    write_file(path, lambda f: f.write(b"new"))  # the fault fired once
    assert path.read_bytes() == b"new"


def test_a_line_that_cannot_be_synced_is_cut_back_off(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    append_line(path, '{"round": 0}')
    _arm(monkeypatch, "append.written")
    with pytest.raises(StorageError, match=r"no space left on device writing .*metrics\.jsonl"):
        append_line(path, '{"round": 1}')
    assert path.read_text() == '{"round": 0}\n'


def test_a_fault_point_waits_for_its_subject_and_count(monkeypatch):
    _arm(monkeypatch, "write.start", "*/round-0002.npz", after=1)
    fault_point("write.start", "a/round-0001.npz")  # another subject
    fault_point("write.written", "a/round-0002.npz")  # another point
    fault_point("write.start", "a/round-0002.npz")  # let through once
    with pytest.raises(OSError, match="No space left"):
        fault_point("write.start", "b/round-0002.npz")
    fault_point("write.start", "b/round-0002.npz")  # disarmed


def test_temp_files_are_cleaned_and_nothing_else(tmp_path):
    for name in ("a.npz.tmp", "b.partial", "keep.npz", "keep.txt"):
        (tmp_path / name).write_text("x")
    removed = clean_temp_files(tmp_path, tmp_path / "missing")
    assert sorted(p.name for p in removed) == ["a.npz.tmp", "b.partial"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.npz", "keep.txt"]


def test_a_status_still_unsaved_at_close_is_named(tmp_path, monkeypatch, caplog):
    store = Store(tmp_path / "link.db")
    store.save_run(RunRow(5, "app", {}, None, status="running"))
    _arm(monkeypatch, "store.write", "runs/5/failed")
    with pytest.raises(StorageError, match=r"no space left on device writing .*link\.db"):
        store.save_run(RunRow(5, "app", {}, None, status="failed"))
    _arm(monkeypatch, "store.write", "runs/5/failed")
    with caplog.at_level(logging.ERROR, logger="pollinate.link"):
        store.close()
    assert "the status of run(s) 5 is not recorded; a restart resumes them" in caplog.text
    assert Store(tmp_path / "link.db").runs()[0].status == "running"
