"""App bundles: deterministic, source files only, checked and contained when unpacked."""

import io
import struct
import warnings
import zipfile
import zlib

import pytest

from pollinate.deploy._bundle import AppBundle, check_bundle, pack_app, unpack_app
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


def handmade_zip(name: str, deflated: bytes, claimed_size: int, crc: int = 0) -> bytes:
    """A one-member zip written by hand, so its header may claim any size (zipfile's own
    writer tells the truth and would take seconds to deflate a gigabyte)."""
    raw = name.encode()
    fields = (crc, len(deflated), claimed_size, len(raw))
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, *fields, 0) + raw
    central = (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            8,
            0,
            0x21,
            *fields,
            0,
            0,
            0,
            0,
            0o644 << 16,
            0,
        )
        + raw
    )
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(deflated), 0
    )
    return local + deflated + central + end


def deflated_zeros(mib: int) -> bytes:
    """A raw deflate stream of ``mib`` MiB of zeros, about 1 KiB per MiB, made in no time."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = squeeze.compress(bytes(1 << 20)) + squeeze.flush(zlib.Z_FULL_FLUSH)
    return block * mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


@pytest.mark.parametrize("claimed_mib", [1024, 0])  # the header's truth, or a lie
def test_a_one_mib_bundle_that_unpacks_to_a_gib_is_refused(tmp_path, claimed_mib):
    bomb = AppBundle.of(handmade_zip("tinyapp/apps.py", deflated_zeros(1024), claimed_mib << 20))
    assert len(bomb.data) < 1.1 * 2**20
    with pytest.raises(WireError, match=f"app bundle {bomb.digest[:12]}"):
        unpack_app(bomb, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []  # nothing left behind


def test_unpacked_bytes_are_counted_as_read_per_file_and_in_all(tmp_path, monkeypatch):
    monkeypatch.setattr("pollinate.deploy._bundle.MAX_FILE_SIZE", 3 << 20)
    monkeypatch.setattr("pollinate.deploy._bundle.MAX_UNPACKED_SIZE", 5 << 20)
    one = AppBundle.of(handmade_zip("a.py", deflated_zeros(4), 4 << 20, zlib.crc32(bytes(4 << 20))))
    with pytest.raises(WireError, match=r"'a.py' unpacks to more than 3 MiB \(the most one file"):
        unpack_app(one, tmp_path / "cache")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in "abc":
            archive.writestr(f"{name}.py", bytes(2 << 20))
    with pytest.raises(WireError, match=r"unpacks to more than 5 MiB \(the most a bundle"):
        unpack_app(AppBundle.of(buffer.getvalue()), tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []


def test_a_bundle_of_too_many_files_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("pollinate.deploy._bundle.MAX_FILES", 3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in "abcd":
            archive.writestr(f"{name}.py", "")
    with pytest.raises(WireError, match=r"holds 4 files, more than the 3"):
        unpack_app(AppBundle.of(buffer.getvalue()), tmp_path / "cache")


def test_an_app_folder_too_big_unpacked_is_refused_when_packed(tmp_path, monkeypatch):
    app = write_app(tmp_path / "app")
    (app / "tinyapp" / "table.py").write_text("X = 0\n" * 200_000)  # 1.2 MB, packs small
    monkeypatch.setattr("pollinate.deploy._bundle.MAX_UNPACKED_SIZE", 1 << 20)
    with pytest.raises(ConfigError, match=r"unpacks to 1\.1 MiB in 4 files.*may hold 1 MiB in"):
        pack_app(app)


@pytest.mark.parametrize(
    ("names", "why"),
    [
        (["a.py", "a.py"], "comes twice"),
        (["pkg", "pkg/mod.py"], "both a file and a folder"),
        (["."], "is not a file name"),
        (["/".join(["d"] * 2000) + "/f.py"], "folders deep"),
        (["x" * 300 + ".py"], "longer than 255 bytes"),
    ],
    ids=["twice", "file-and-folder", "dot", "deep", "long"],
)
def test_a_bundle_that_cannot_be_written_out_is_refused_when_checked(tmp_path, names, why):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it writes
        for name in names:
            archive.writestr(name, "x = 1\n")
    with pytest.raises(WireError, match=why):
        check_bundle(AppBundle.of(buffer.getvalue()))
