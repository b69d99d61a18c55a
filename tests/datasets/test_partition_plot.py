"""partition_stats counts, and the heatmap a person reads."""

import numpy as np
import pytest

from pollinate.datasets import partition

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_stats_rows_are_partitions_and_column_sums_are_label_counts():
    labels = np.random.default_rng(0).integers(0, 6, 500)
    parts = partition.dirichlet(labels, 7, alpha=0.5, min_partition_size=0, seed=1)
    counts = partition.partition_stats(labels, parts)
    assert counts.shape == (7, 6)
    np.testing.assert_array_equal(counts.sum(axis=0), np.bincount(labels))
    np.testing.assert_array_equal(counts.sum(axis=1), [len(part) for part in parts])


def test_stats_columns_follow_sorted_labels_of_any_type():
    labels = np.array(["cat", "ant", "cat", "bee"])
    counts = partition.partition_stats(labels, [np.array([0, 1]), np.array([2, 3])])
    np.testing.assert_array_equal(counts, [[1, 0, 1], [0, 1, 1]])


def test_stats_num_classes_fixes_the_width():
    labels = np.array([0, 2, 2])
    counts = partition.partition_stats(labels, [np.array([0]), np.array([1, 2])], num_classes=5)
    np.testing.assert_array_equal(counts, [[1, 0, 0, 0, 0], [0, 0, 2, 0, 0]])


def test_heatmap_writes_a_png_matplotlib_reads_back(tmp_path):
    image = pytest.importorskip("matplotlib.image")
    labels = np.repeat(np.arange(10), 30)
    parts = partition.pathological(labels, 6, classes_per_partition=2)
    path = tmp_path / "heat.png"
    partition.plot_partition_heatmap(labels, parts, path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_heatmap_has_title_axis_labels_and_a_colorbar():
    pytest.importorskip("matplotlib")
    labels = np.repeat(np.arange(3), 10)
    fig = partition.plot_partition_heatmap(labels, partition.iid(labels, 4), title="IID, 4")
    ax, bar = fig.axes
    assert ax.get_title() == "IID, 4"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("class", "partition")
    assert bar.get_ylabel() == "examples"


def test_heatmap_annotates_small_matrices_only():
    pytest.importorskip("matplotlib")
    labels = np.repeat(np.arange(3), 30)
    small = partition.plot_partition_heatmap(labels, partition.iid(labels, 4))
    assert len(small.axes[0].texts) == 4 * 3
    large = partition.plot_partition_heatmap(labels, partition.iid(labels, 21))
    assert len(large.axes[0].texts) == 0


def test_heatmap_uses_class_names_as_column_ticks():
    pytest.importorskip("matplotlib")
    labels = np.array([0, 1, 1, 0])
    fig = partition.plot_partition_heatmap(labels, [np.array([0, 1])], class_names=["no", "yes"])
    ticks = [tick.get_text() for tick in fig.axes[0].get_xticklabels()]
    assert ticks == ["no", "yes"]


def test_heatmap_labels_columns_with_the_labels_themselves():
    pytest.importorskip("matplotlib")
    labels = np.array(["cat", "ant", "bee", "cat"])
    fig = partition.plot_partition_heatmap(labels, [np.arange(4)])
    ticks = [tick.get_text() for tick in fig.axes[0].get_xticklabels()]
    assert ticks == ["ant", "bee", "cat"]
