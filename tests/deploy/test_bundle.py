"""App bundles: deterministic, source files only, checked and contained when unpacked."""

import io
import zipfile

import pytest

from pollinate.deploy._bundle import AppBundle, pack_app, unpack_app
from pollinate.errors import ConfigError, WireError

from .submitted import write_app


def test_the_same_code_packs_to_the_same_digest_without_results_caches_or_secrets(tmp_path):
    app = write_app(tmp_path / "app")
    first = pack_app(app)
    for junk in (
        "runs/r1/metrics.jsonl",
        "tinyapp/__pycache__/apps.json",
        ".git/config.txt",
        "certs/ca.json",
        "data/train.csv",
        "tinyapp/weights.npz",
    ):
        (app / junk).parent.mkdir(parents=True, exist_ok=True)
        (app / junk).write_text("not code")
    (app / "tinyapp" / "data").mkdir()
    (app / "tinyapp" / "data" / "loader.py").write_text("X = 1\n")  # a subpackage named data
    again = pack_app(app)
    names = sorted(zipfile.ZipFile(io.BytesIO(again.data)).namelist())
    assert names == [
        "pyproject.toml",
        "tinyapp/__init__.py",
        "tinyapp/apps.py",
        "tinyapp/data/loader.py",
    ]
    (app / "tinyapp" / "data" / "loader.py").unlink()
    assert pack_app(app).digest == first.digest  # timestamps and order do not matter


def test_unpacking_checks_the_digest_and_keeps_every_file_inside(tmp_path):
    bundle = pack_app(write_app(tmp_path / "app"))
    folder = unpack_app(bundle, tmp_path / "cache")
    assert (folder / "tinyapp" / "apps.py").is_file() and folder.name == bundle.digest
    assert unpack_app(bundle, tmp_path / "cache") == folder  # once per digest
    with pytest.raises(WireError, match="does not match its digest"):
        unpack_app(AppBundle(bundle.data + b"x", bundle.digest), tmp_path / "other")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../escape.py", "print('out')")
    with pytest.raises(WireError, match="leaves its folder"):
        unpack_app(AppBundle.of(buffer.getvalue()), tmp_path / "cache")
    assert not (tmp_path / "escape.py").exists()
    with pytest.raises(WireError, match="not a valid zip"):
        unpack_app(AppBundle.of(b"not a zip"), tmp_path / "cache")


def test_a_folder_that_is_not_an_app_or_too_big_is_refused(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"no pyproject\.toml"):
        pack_app(tmp_path)
    app = write_app(tmp_path / "app")
    monkeypatch.setattr("pollinate.deploy._bundle.MAX_BUNDLE_SIZE", 100)
    with pytest.raises(ConfigError, match=r"keep data and models out of the app folder"):
        pack_app(app)
