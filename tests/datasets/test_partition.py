"""Property tests: every partitioner splits disjointly, covers what it should, keeps its
constraints, and is deterministic for a seed."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pollinate.datasets import partition
from pollinate.errors import ConfigError

PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def labels_and_partitions(draw, max_classes=8, max_items=300):
    """Integer labels (at least one item per partition) and a partition count."""
    num_partitions = draw(st.integers(1, 12))
    n = draw(st.integers(num_partitions, max_items))
    num_classes = draw(st.integers(1, max_classes))
    seed = draw(st.integers(0, 2**32 - 1))
    labels = np.random.default_rng(seed).integers(0, num_classes, n)
    return labels, num_partitions, draw(st.integers(0, 1000))


def assert_well_formed(parts, num_partitions):
    assert len(parts) == num_partitions
    for part in parts:
        assert part.dtype == np.int64 and part.ndim == 1
        assert np.all(np.diff(part) > 0), "indices must be sorted and unique"


def assert_disjoint(parts):
    flat = np.concatenate(parts) if parts else np.array([], dtype=np.int64)
    assert len(np.unique(flat)) == len(flat), "an index is in two partitions"
    return flat


def assert_covers_all(parts, n):
    flat = assert_disjoint(parts)
    np.testing.assert_array_equal(np.sort(flat), np.arange(n))


@PROPERTY
@given(labels_and_partitions())
def test_iid_covers_every_index_once_in_equal_parts(case):
    labels, p, seed = case
    parts = partition.iid(labels, p, seed=seed)
    assert_well_formed(parts, p)
    assert_covers_all(parts, len(labels))
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_iid_accepts_an_item_count():
    parts = partition.iid(10, 3, seed=1)
    assert_covers_all(parts, 10)


@PROPERTY
@given(labels_and_partitions(), st.floats(0.05, 100), st.booleans())
def test_dirichlet_covers_every_index_once(case, alpha, balancing):
    labels, p, seed = case
    parts = partition.dirichlet(
        labels, p, alpha=alpha, min_partition_size=0, self_balancing=balancing, seed=seed
    )
    assert_well_formed(parts, p)
    assert_covers_all(parts, len(labels))


@PROPERTY
@given(labels_and_partitions(), st.integers(1, 10), st.booleans())
def test_dirichlet_respects_min_partition_size_or_says_what_to_change(case, min_size, balancing):
    labels, p, seed = case
    if min_size * p > len(labels):
        min_size = len(labels) // p
    try:
        parts = partition.dirichlet(
            labels, p, alpha=1.0, min_partition_size=min_size, self_balancing=balancing, seed=seed
        )
    except ConfigError as error:
        assert "min_partition_size" in str(error) and "alpha" in str(error)
        return
    assert min(len(part) for part in parts) >= min_size
    assert_covers_all(parts, len(labels))


def test_dirichlet_small_alpha_skews_more_than_large_alpha():
    labels = np.repeat(np.arange(10), 500)

    def mean_classes(alpha):
        parts = partition.dirichlet(labels, 10, alpha=alpha, min_partition_size=0, seed=3)
        return np.mean([len(np.unique(labels[part])) for part in parts])

    assert mean_classes(0.05) < mean_classes(100.0) == 10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dirichlet_rounding_favours_neither_the_first_nor_the_last_partition(seed):
    labels = np.repeat(np.arange(200), 10)  # many small classes: 0.1 items per class and partition
    sizes = [
        len(part)
        for part in partition.dirichlet(labels, 100, alpha=1.0, min_partition_size=0, seed=seed)
    ]
    assert 0 < sizes[0] < 60 and 0 < sizes[-1] < 60


def test_dirichlet_self_balancing_evens_out_sizes():
    labels = np.repeat(np.arange(10), 1000)
    kwargs = {"alpha": 0.3, "min_partition_size": 0, "seed": 5}
    plain = [len(part) for part in partition.dirichlet(labels, 20, **kwargs)]
    balanced = [
        len(part) for part in partition.dirichlet(labels, 20, self_balancing=True, **kwargs)
    ]
    assert np.std(balanced) < np.std(plain)


@PROPERTY
@given(labels_and_partitions(), st.floats(0.05, 10), st.data())
def test_inner_dirichlet_gives_exactly_the_sizes_asked_for(case, alpha, data):
    labels, p, seed = case
    cuts = np.sort(data.draw(st.lists(st.integers(1, len(labels)), min_size=p - 1, max_size=p - 1)))
    sizes = np.diff(np.concatenate([[0], cuts, [len(labels)]]))
    sizes = [int(s) for s in sizes if s > 0]
    parts = partition.inner_dirichlet(labels, sizes, alpha=alpha, seed=seed)
    assert_well_formed(parts, len(sizes))
    assert [len(part) for part in parts] == sizes
    assert_covers_all(parts, len(labels))


def test_inner_dirichlet_may_leave_items_out_when_sizes_sum_to_less():
    labels = np.repeat(np.arange(4), 50)
    parts = partition.inner_dirichlet(labels, [30, 20, 10], alpha=0.5, seed=0)
    assert [len(part) for part in parts] == [30, 20, 10]
    assert_disjoint(parts)


@PROPERTY
@given(labels_and_partitions(max_classes=10), st.data())
def test_pathological_gives_each_partition_k_classes(case, data):
    labels, p, seed = case
    num_classes = len(np.unique(labels))
    k = data.draw(st.integers(1, num_classes))
    parts = partition.pathological(labels, p, classes_per_partition=k, seed=seed)
    assert_well_formed(parts, p)
    flat = assert_disjoint(parts)
    assert all(len(np.unique(labels[part])) <= k for part in parts)
    if p * k >= num_classes:
        np.testing.assert_array_equal(np.sort(flat), np.arange(len(labels)))


def test_pathological_gives_exactly_k_classes_when_every_class_is_large():
    labels = np.repeat(np.arange(10), 100)
    parts = partition.pathological(labels, 7, classes_per_partition=3, seed=4)
    assert [len(np.unique(labels[part])) for part in parts] == [3] * 7
    assert all(p % 10 in labels[part] for p, part in enumerate(parts)), "round robin first class"
    assert_covers_all(parts, len(labels))


def test_pathological_covers_every_class_with_fewer_partitions_than_classes():
    labels = np.repeat(np.arange(10), 20)
    parts = partition.pathological(labels, 4, classes_per_partition=3, seed=0)
    held = set(np.concatenate([labels[part] for part in parts]).tolist())
    assert held == set(range(10))


def base_split_minus_excluded(labels, excluded, order):
    n, p = len(labels), len(excluded)
    runs = [order[i * n // p : (i + 1) * n // p] for i in range(p)]
    return [
        np.sort(run[~np.isin(labels[run], drop)]) for run, drop in zip(runs, excluded, strict=True)
    ]


@PROPERTY
@given(labels_and_partitions(), st.data())
def test_label_exclusion_is_the_base_split_minus_excluded_labels(case, data):
    labels, p, seed = case
    present = sorted(set(labels.tolist()))
    excluded = [data.draw(st.lists(st.sampled_from(present), unique=True)) for _ in range(p)]
    parts = partition.label_exclusion(labels, excluded, seed=seed)
    assert_well_formed(parts, p)
    order = np.random.default_rng(seed).permutation(len(labels))
    for got, want, drop in zip(
        parts, base_split_minus_excluded(labels, excluded, order), excluded, strict=True
    ):
        np.testing.assert_array_equal(got, want)
        assert not np.isin(labels[got], drop).any()


def test_label_exclusion_reproduces_w1_partition_from_its_torch_permutation():
    torch = pytest.importorskip("torch")
    excluded = ((1, 3, 7), (2, 5, 8), (4, 6, 9))
    y = torch.from_numpy(np.random.default_rng(7).integers(0, 10, 6001))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(42))
    parts = partition.label_exclusion(y.numpy(), excluded, order=perm.numpy())
    for p in range(3):  # W1's own code, examples/skewed-mnist task.load_partitions
        idx = perm[p * len(y) // 3 : (p + 1) * len(y) // 3]
        idx = idx[~torch.isin(y[idx], torch.tensor(excluded[p]))]
        np.testing.assert_array_equal(parts[p], np.sort(idx.numpy()))


@PROPERTY
@given(labels_and_partitions(), st.integers(1, 4))
def test_shard_covers_every_index_once_with_few_labels_each(case, per):
    labels, p, seed = case
    if p * per > len(labels):
        per = 1
    parts = partition.shard(labels, p, shards_per_partition=per, seed=seed)
    assert_well_formed(parts, p)
    assert_covers_all(parts, len(labels))
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= per
    shard_size = -(-len(labels) // (p * per))
    if np.bincount(labels).min() >= shard_size:  # a shard then spans at most two labels
        assert all(len(np.unique(labels[part])) <= 2 * per for part in parts)


def test_shard_with_one_shard_per_label_gives_single_label_partitions():
    labels = np.repeat(np.arange(5), 40)
    parts = partition.shard(labels, 5, shards_per_partition=1, seed=2)
    assert sorted(int(np.unique(labels[part])[0]) for part in parts) == list(range(5))
    assert all(len(np.unique(labels[part])) == 1 for part in parts)


@PROPERTY
@given(
    st.integers(1, 2000),
    st.integers(1, 40),
    st.sampled_from(["linear", "square", "exponential"]),
    st.integers(0, 1000),
)
def test_size_skew_sizes_grow_and_cover_every_index_once(n, p, kind, seed):
    p = min(p, n)
    parts = partition.size_skew(n, p, kind=kind, seed=seed)
    assert_well_formed(parts, p)
    assert_covers_all(parts, n)
    sizes = np.array([len(part) for part in parts])
    assert np.all(np.diff(sizes) >= 0) and sizes.min() >= 1


def test_size_skew_kinds_grow_as_named():
    def sizes(kind):
        return [len(part) for part in partition.size_skew(10_000, 4, kind=kind)]

    linear, square, exponential = sizes("linear"), sizes("square"), sizes("exponential")
    assert linear[3] / linear[0] == pytest.approx(4, rel=0.01)
    assert square[3] / square[0] == pytest.approx(16, rel=0.01)
    assert exponential[3] / exponential[2] == pytest.approx(np.e, rel=0.01)


@PROPERTY
@given(st.lists(st.sampled_from(["w3", "w1", "w2", "w10"]), min_size=1, max_size=200))
def test_natural_id_gives_one_partition_per_id_in_sorted_order(ids):
    ids = np.array(ids)
    parts = partition.natural_id(ids)
    distinct = np.unique(ids)
    assert_well_formed(parts, len(distinct))
    assert_covers_all(parts, len(ids))
    for name, part in zip(distinct, parts, strict=True):
        np.testing.assert_array_equal(part, np.flatnonzero(ids == name))


LABELS = np.random.default_rng(0).integers(0, 10, 2000)
SEEDED = {
    "iid": lambda seed: partition.iid(LABELS, 10, seed=seed),
    "dirichlet": lambda seed: partition.dirichlet(LABELS, 10, alpha=0.5, seed=seed),
    "dirichlet-balanced": lambda seed: partition.dirichlet(
        LABELS, 10, alpha=0.5, self_balancing=True, seed=seed
    ),
    "inner_dirichlet": lambda seed: partition.inner_dirichlet(
        LABELS, [200] * 10, alpha=0.5, seed=seed
    ),
    "pathological": lambda seed: partition.pathological(
        LABELS, 10, classes_per_partition=2, seed=seed
    ),
    "label_exclusion": lambda seed: partition.label_exclusion(LABELS, [[1], [2], [3]], seed=seed),
    "shard": lambda seed: partition.shard(LABELS, 10, shards_per_partition=2, seed=seed),
    "size_skew": lambda seed: partition.size_skew(2000, 10, kind="square", seed=seed),
}


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_same_seed_gives_same_partitions_and_another_seed_others(name):
    make = SEEDED[name]
    first, again, other = make(11), make(11), make(12)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_public_names_are_exported_in_a_sorted_all():
    assert list(partition.__all__) == sorted(partition.__all__)
    public = {
        name
        for name, value in vars(partition).items()
        if not name.startswith("_")
        and callable(value)
        and getattr(value, "__module__", "").startswith(partition.__name__)
    }
    assert public == set(partition.__all__)
