import gzip
import time

import numpy as np
import pytest

from pollinate import datasets
from pollinate.datasets import Dataset, as_torch, load, load_csv, load_digits, load_mnist, read_idx
from pollinate.errors import ConfigError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def idx(type_code, shape, payload):
    header = bytes([0, 0, type_code, len(shape)])
    return header + b"".join(d.to_bytes(4, "big") for d in shape) + payload


# digits


def test_digits_shapes_and_dtypes():
    ds = load_digits()
    assert ds.x_train.shape == (1438, 8, 8) and ds.x_test.shape == (359, 8, 8)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.x_train.max() == 16 and ds.classes == tuple("0123456789")


def test_digits_split_is_deterministic_per_seed():
    a, b, c = load_digits(seed=1), load_digits(seed=1), load_digits(seed=2)
    assert np.array_equal(a.y_train, b.y_train) and np.array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.y_train, c.y_train)


def test_load_by_name_and_unknown_name():
    assert load("digits").name == "digits"
    assert set(datasets.LOADERS) >= {"digits", "mnist", "fashion-mnist", "cifar10", "csv"}
    with pytest.raises(ConfigError, match="unknown dataset 'nope'; known: cifar10, csv"):
        load("nope")


def test_dataset_repr_shows_shapes_not_arrays():
    assert "train=(1438, 8, 8) uint8" in repr(load_digits())


# IDX parsing


def test_read_idx_uint8_images_and_labels(tmp_path):
    images = bytes(range(2 * 3 * 4))
    (tmp_path / "x.gz").write_bytes(gzip.compress(idx(0x08, (2, 3, 4), images)))
    (tmp_path / "y").write_bytes(idx(0x08, (2,), b"\x07\x03"))
    x, y = read_idx(tmp_path / "x.gz"), read_idx(tmp_path / "y")
    assert x.dtype == np.uint8 and x.shape == (2, 3, 4) and x[1, 2, 3] == 23
    assert y.tolist() == [7, 3] and x.flags.writeable


def test_read_idx_big_endian_int32(tmp_path):
    (tmp_path / "i").write_bytes(
        idx(0x0C, (2,), (1).to_bytes(4, "big") + (-2).to_bytes(4, "big", signed=True))
    )
    assert read_idx(tmp_path / "i").tolist() == [1, -2]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x1f\x8bnot gzip at all", "damaged gzip"),
        (b"PK\x03\x04rest", "not an IDX file: bad magic 504b0304"),
        (idx(0x08, (3, 2), b"\x00" * 5), "truncated or padded: header says 18 bytes, file has 17"),
        (bytes([0, 0, 8, 3, 0, 0]), "truncated: its header needs 16 bytes"),
    ],
    ids=["bad-gzip", "bad-magic", "truncated-data", "truncated-header"],
)
def test_read_idx_malformed_files_are_clear_errors(tmp_path, content, message):
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        read_idx(tmp_path / "bad")


def test_load_mnist_from_fake_folder(fake_mnist_dir):
    ds = load_mnist(fake_mnist_dir, download=False)
    assert ds.x_train.shape == (6, 28, 28) and ds.x_test.shape == (4, 28, 28)
    assert ds.x_train[5].min() == ds.x_train[5].max() == 5
    assert ds.y_test.tolist() == [0, 1, 2, 3] and ds.y_test.dtype == np.int64


def test_load_mnist_mismatched_counts_is_clear(fake_mnist_dir):
    labels = fake_mnist_dir / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx(0x08, (3,), b"\x00\x01\x02")))
    with pytest.raises(ConfigError, match=r"mnist test files .* disagree"):
        load_mnist(fake_mnist_dir, download=False)


def test_real_mnist(mnist_dir):
    start = time.perf_counter()
    ds = load_mnist(mnist_dir, download=False)
    print(f"MNIST (70,000 images) loaded in {time.perf_counter() - start:.2f} s")
    assert len(ds.x_train) + len(ds.x_test) == 70_000
    assert ds.x_train.shape == (60_000, 28, 28) and ds.x_train.dtype == np.uint8
    assert np.bincount(ds.y_train).tolist() == MNIST_TRAIN_COUNTS


# torch


def test_as_torch_wraps_arrays_and_copies_read_only_ones():
    torch = pytest.importorskip("torch")
    x = np.arange(6, dtype=np.uint8).reshape(3, 2)
    x.flags.writeable = False
    data = as_torch(x, np.array([0, 1, 2], dtype=np.int64))
    assert len(data) == 3
    image, label = data[2]
    assert image.tolist() == [4, 5] and label.dtype == torch.int64


# CSV


def write_csv(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_named_label_column(tmp_path):
    rows = "".join(f"{i},{i * 0.5},{'cat' if i % 2 else 'dog'}\n" for i in range(10))
    ds = load_csv(write_csv(tmp_path / "t.csv", "a,b,kind\n" + rows), label_column="kind")
    assert ds.classes == ("cat", "dog") and ds.name == "t"
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape == (8, 2) and len(ds.y_test) == 2
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    assert all(label == (0 if a % 2 else 1) for (a, _), label in zip(x, y, strict=True))


def test_csv_numeric_labels_sort_numerically_and_split_is_seeded(tmp_path):
    rows = "".join(f"{i % 11},{i}\n" for i in range(40))
    path = write_csv(tmp_path / "n.csv", "label,x\n" + rows)
    ds = load_csv(path, label_column=0, test_fraction=0.25, seed=3)
    assert ds.classes == tuple(str(i) for i in range(11))
    assert len(ds.y_test) == 10
    assert np.array_equal(
        ds.x_test, load_csv(path, label_column=0, test_fraction=0.25, seed=3).x_test
    )
    assert np.array_equal(ds.x_train[:, 0] % 11, ds.y_train)


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("a,b\n1,2\n", {"label_column": "c"}, "no label column 'c'"),
        ("a,b\n1,x\n", {"label_column": "a"}, "line 2, column 'b': 'x' is not a number"),
        ("a,b\n1,2,3\n", {"label_column": "a"}, "line 2 has 3 fields, header has 2"),
        ("a,b\n", {"label_column": "a"}, "needs a header row and at least one data row"),
    ],
    ids=["no-label-column", "not-a-number", "ragged-row", "no-data"],
)
def test_csv_errors_name_the_problem(tmp_path, text, options, message):
    with pytest.raises(ConfigError, match=message):
        load_csv(write_csv(tmp_path / "bad.csv", text), **options)


def test_dataset_is_frozen():
    ds = load_digits()
    assert isinstance(ds, Dataset)
    with pytest.raises(AttributeError):
        ds.name = "other"  # type: ignore[misc]


def test_fashion_mnist_reads_the_same_layout(fake_mnist_dir):
    ds = datasets.load("fashion-mnist", fake_mnist_dir, download=False)
    assert ds.name == "fashion-mnist" and ds.classes[9] == "Ankle boot"
    assert ds.x_train.shape == (6, 28, 28)


def test_load_names_an_option_its_loader_does_not_take():
    with pytest.raises(ConfigError, match=r"dataset 'digits': .*'data_dri'.*its loader takes"):
        datasets.load("digits", data_dri="/tmp")
