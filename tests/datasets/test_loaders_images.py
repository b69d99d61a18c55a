import io
import tarfile

import numpy as np
import pytest

from pollinate.datasets import load, load_cifar10, load_image_folder
from pollinate.errors import ConfigError

# CIFAR-10


def cifar_batch(labels):
    """Records whose image i has red = label, green = 100 + i, blue = 200."""
    records = []
    for i, label in enumerate(labels):
        planes = bytes([label]) * 1024 + bytes([100 + i]) * 1024 + bytes([200]) * 1024
        records.append(bytes([label]) + planes)
    return b"".join(records)


def write_cifar_archive(path, batches):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def cifar_dir(tmp_path):
    batches = {f"data_batch_{i}.bin": cifar_batch([i, i + 1]) for i in range(1, 6)}
    batches["test_batch.bin"] = cifar_batch([9, 0, 3])
    write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", batches)
    return tmp_path


def test_cifar10_binary_records(cifar_dir):
    ds = load_cifar10(cifar_dir, download=False)
    assert ds.x_train.shape == (10, 32, 32, 3) and ds.x_train.dtype == np.uint8
    assert ds.y_train.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert ds.y_test.tolist() == [9, 0, 3] and ds.classes[9] == "truck"
    assert ds.x_test[1, 5, 7].tolist() == [0, 101, 200]


def test_cifar10_bad_record_size(tmp_path):
    batches = {f"data_batch_{i}.bin": cifar_batch([1]) for i in range(1, 6)}
    batches["test_batch.bin"] = cifar_batch([1])[:-1]
    write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", batches)
    with pytest.raises(ConfigError, match="not a multiple of the 3073-byte record"):
        load_cifar10(tmp_path, download=False)


def test_cifar10_missing_batch(tmp_path):
    write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz", {"test_batch.bin": cifar_batch([1])})
    with pytest.raises(ConfigError, match=r"has no data_batch_1\.bin"):
        load("cifar10", tmp_path, download=False)


# image folder


@pytest.fixture
def image_dir(tmp_path):
    """Three classes of tiny PNGs: class c, image i is 4x6 (HxW), RGB (10c, i, 255)."""
    image = pytest.importorskip("PIL.Image")
    root = tmp_path / "photos"
    for c, name in enumerate(["ant", "bee", "cow"]):
        (root / name).mkdir(parents=True)
        for i in range(4):
            pixels = np.full((4, 6, 3), (10 * c, i, 255), dtype=np.uint8)
            image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "ant" / "notes.txt").write_text("not an image")
    return root


def test_image_folder_rgb(image_dir):
    ds = load_image_folder(image_dir)
    assert ds.classes == ("ant", "bee", "cow") and ds.name == "photos"
    assert ds.x_train.shape == (12, 4, 6, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (0, 4, 6, 3)
    assert ds.x_train[5, 0, 0].tolist() == [10, 1, 255] and ds.y_train[5] == 1


def test_image_folder_grayscale_and_resize(image_dir):
    ds = load("image-folder", image_dir, color_mode="grayscale", image_size=(2, 3))
    assert ds.x_train.shape == (12, 2, 3, 1)
    assert np.all(ds.x_train[ds.y_train == 0] > 0)


def test_image_folder_validation_split_is_seeded(image_dir):
    a = load_image_folder(image_dir, validation_split=0.25, seed=7)
    b = load_image_folder(image_dir, validation_split=0.25, seed=7)
    assert len(a.y_train) == 9 and len(a.y_test) == 3
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_train, b.y_train)
    seeds = {
        tuple(load_image_folder(image_dir, validation_split=0.25, seed=s).y_test) for s in range(5)
    }
    assert len(seeds) > 1


def test_image_folder_mixed_sizes_asks_for_image_size(image_dir):
    image = pytest.importorskip("PIL.Image")
    image.new("RGB", (5, 5)).save(image_dir / "cow" / "big.png")
    with pytest.raises(ConfigError, match=r"is 5x5 but .* is 6x4: pass image_size"):
        load_image_folder(image_dir)


def test_image_folder_without_classes(tmp_path):
    with pytest.raises(ConfigError, match="no class sub-folders"):
        load_image_folder(tmp_path)


def test_image_folder_classes_keep_labels_when_a_client_lacks_a_class(image_dir):
    import shutil

    shutil.rmtree(image_dir / "bee")  # this client never saw a bee
    ds = load_image_folder(image_dir, classes=["ant", "bee", "cow"])
    assert ds.classes == ("ant", "bee", "cow")
    assert sorted(set(ds.y_train.tolist())) == [0, 2]  # cow is still 2, not 1
    with pytest.raises(ConfigError, match="class folders not in classes: cow"):
        load_image_folder(image_dir, classes=["ant", "bee"])
