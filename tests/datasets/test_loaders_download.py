import hashlib
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest

from pollinate.datasets import _idx, cache_root, load, load_mnist
from pollinate.errors import ConfigError


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def serve_fake_mnist(monkeypatch, server, fake_mnist_dir, *, corrupt=None):
    """Put the fake MNIST files on the server and point the download table at it."""
    table = []
    for remote in _idx.MNIST_FILES:
        served = server.root / remote.name
        shutil.copy(fake_mnist_dir / remote.name, served)
        digest = "0" * 64 if remote.name == corrupt else sha256_of(served)
        table.append(replace(remote, urls=(server.url + remote.name,), sha256=(digest,)))
    monkeypatch.setattr(_idx, "MNIST_FILES", tuple(table))


def test_cache_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("POLLINATE_DATA", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x"
    monkeypatch.delenv("POLLINATE_DATA")
    assert cache_root() == cache_root().home() / ".cache" / "pollinate"


def test_download_verifies_and_caches(monkeypatch, file_server, fake_mnist_dir):
    serve_fake_mnist(monkeypatch, file_server, fake_mnist_dir)
    ds = load_mnist()
    assert ds.x_train.shape == (6, 28, 28)
    assert sorted(os.listdir(cache_root() / "mnist")) == sorted(f.name for f in _idx.MNIST_FILES)
    assert len(file_server.requests) == 4
    again = load("mnist")
    assert len(file_server.requests) == 4, "a cached file was downloaded again"
    assert np.array_equal(again.x_test, ds.x_test)


def test_download_into_given_data_dir(monkeypatch, file_server, fake_mnist_dir, tmp_path):
    serve_fake_mnist(monkeypatch, file_server, fake_mnist_dir)
    load_mnist(tmp_path / "mine")
    assert (tmp_path / "mine" / "train-images-idx3-ubyte.gz").is_file()


def test_checksum_mismatch_leaves_no_file(monkeypatch, file_server, fake_mnist_dir):
    bad = "t10k-images-idx3-ubyte.gz"
    serve_fake_mnist(monkeypatch, file_server, fake_mnist_dir, corrupt=bad)
    with pytest.raises(
        ConfigError, match=r"could not download t10k-images.*SHA-256 mismatch"
    ) as info:
        load_mnist()
    assert file_server.url + bad in str(info.value)
    assert f"put them in {cache_root() / 'mnist'}" in str(info.value)
    # files download in table order: the two before the bad one, and no temporary file
    assert sorted(os.listdir(cache_root() / "mnist")) == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]


def test_network_error_is_clear_and_tries_next_mirror(monkeypatch, file_server, fake_mnist_dir):
    serve_fake_mnist(monkeypatch, file_server, fake_mnist_dir)
    missing = file_server.url + "gone/"
    table = tuple(replace(f, urls=(missing + f.name, *f.urls)) for f in _idx.MNIST_FILES)
    monkeypatch.setattr(_idx, "MNIST_FILES", table)
    assert load_mnist().x_train.shape == (6, 28, 28)
    monkeypatch.setattr(
        _idx, "MNIST_FILES", tuple(replace(f, urls=(missing + f.name,)) for f in table)
    )
    with pytest.raises(ConfigError, match=r"could not download .*404"):
        load_mnist(cache_root() / "elsewhere")


def test_absent_without_download_says_where_to_put_files(tmp_path):
    with pytest.raises(ConfigError, match="download=False") as info:
        load_mnist(tmp_path / "empty", download=False)
    message = str(info.value)
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in message
    assert f"put them in {tmp_path / 'empty'}" in message


def test_real_mnist_digests_match_table(mnist_dir):
    for remote in _idx.MNIST_FILES:
        assert sha256_of(mnist_dir / remote.name) in remote.sha256
