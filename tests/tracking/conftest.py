import threading

import pytest


@pytest.fixture(autouse=True)
def _wandb_offline_and_contained(tmp_path, monkeypatch):
    """No W&B key, and wandb's caches and settings in the test's folder, never the home's."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))


@pytest.fixture
def no_stray_threads():
    """The threads a test leaves running beyond those it found: none."""
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not left, f"threads left running: {left}"
