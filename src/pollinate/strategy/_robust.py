"""Byzantine-robust aggregation: norm clipping, order statistics, Krum and Bulyan.

Pieces for :func:`~pollinate.strategy.chain`, and the named strategies built of them:

- ``norm_bound``: clip each update's distance from the global model. Sun et al., 2019, "Can
  You Really Backdoor Federated Learning?", https://arxiv.org/abs/1911.07963
- ``median``, ``trimmed_mean`` (FedMedian, FedTrimmedAvg): coordinate-wise order statistics.
  Yin et al., 2018, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical
  Rates", https://arxiv.org/abs/1803.01498
- ``krum``, ``multi_krum`` (Krum, MultiKrum): keep the updates closest to their neighbours.
  Blanchard et al., 2017, "Machine Learning with Adversaries: Byzantine Tolerant Gradient
  Descent", NeurIPS,
  https://papers.nips.cc/paper/2017/hash/f4b9ec30ad9f68f89b29639786cb62ef-Abstract.html
- ``bulyan`` (Bulyan): Krum selection, then a trimmed mean around the median. El Mhamdi et
  al., 2018, "The Hidden Vulnerability of Distributed Learning in Byzantium",
  https://arxiv.org/abs/1802.07927

The updates are held for the round (they are in memory anyway); the math works one array
name (layer) at a time, stacking only that layer of every update as an n x size float64
matrix, so the extra memory is O(n x largest layer), not O(n x model). The order statistics
ignore the nodes' weights: a weight is the node's own claim, and a malicious node would
claim a large one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from ..errors import ConfigError
from ..records import Array, ArrayRecord
from ._compose import (
    Aggregator,
    Update,
    UpdateFilter,
    chain,
    require_updates,
    weighted_average,
)
from ._fedavg import FedAvg
from .clipping import clip_delta
from .clipping import flat as _flat
from .clipping import unstack as _unstack

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._fedavg import FedAvgOptions

__all__ = [
    "Bulyan",
    "FedMedian",
    "FedTrimmedAvg",
    "Krum",
    "MultiKrum",
    "bulyan",
    "krum",
    "median",
    "multi_krum",
    "norm_bound",
    "trimmed_mean",
]

_Floats: TypeAlias = "np.ndarray[Any, Any]"
"""A float64 array: a layer stacked over the updates (n x size), or one reduced (size)."""


# --- pieces -----------------------------------------------------------------------------


def norm_bound(max_norm: float) -> UpdateFilter:
    """Clip each update to at most ``max_norm`` (L2) away from the current global model.

    The update's delta from the current model, over all its floating-point arrays together,
    is scaled down to length ``max_norm`` if it is longer, so that no node can move the
    model far on its own (Sun et al., 2019). Integer and boolean arrays (counters) are left
    as the node sent them. Streams: one update at a time, O(largest layer) extra memory.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)):
        raise ConfigError(f"norm_bound: max_norm must be a number, got {max_norm!r}")
    if not (math.isfinite(max_norm) and max_norm > 0):
        raise ConfigError(f"norm_bound: max_norm must be positive and finite, got {max_norm}")
    return _NormBound(float(max_norm))


def median() -> Aggregator:
    """The coordinate-wise median of the updates' models (FedMedian; Yin et al., 2018).

    Unweighted: the nodes' weights are ignored. Integer arrays are rounded, boolean arrays
    take the majority (a tie counts as True). Memory: O(n x largest layer) beyond the
    updates themselves.
    """
    return _Median()


def trimmed_mean(beta: float) -> Aggregator:
    """The coordinate-wise mean after dropping the floor(beta * n) largest and smallest values.

    Yin et al., 2018. ``0 <= beta < 0.5``: ``beta=0`` is the plain (unweighted) mean. The
    nodes' weights are ignored. Memory: O(n x largest layer) beyond the updates themselves.
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 0.5:
        raise ConfigError(
            f"trimmed_mean: beta must be at least 0 and below 0.5 (the share cut from each "
            f"end), got {beta!r}"
        )
    return _TrimmedMean(float(beta))


def krum(num_malicious_nodes: int) -> UpdateFilter:
    """Keep the one update closest to its neighbours, tolerating ``f = num_malicious_nodes``.

    An update's score is the sum of its squared L2 distances to its n - f - 2 nearest other
    updates; the lowest score wins (Blanchard et al., 2017), and a tie goes to the update
    nearer its next neighbours, then to the earliest. Needs n >= 2f + 3 updates a round.
    Memory: O(n x largest layer) beyond the updates themselves.
    """
    f = _whole("krum", "num_malicious_nodes", num_malicious_nodes, 0)
    return _Krum(f, 1, f"krum(num_malicious_nodes={f})")


def multi_krum(num_malicious_nodes: int, num_nodes_to_keep: int | None = None) -> UpdateFilter:
    """Keep the ``m = num_nodes_to_keep`` updates of lowest Krum score (default ``n - f``).

    Blanchard et al., 2017; ``f`` is ``num_malicious_nodes``. The kept updates go on, in
    their send order, to the aggregator that follows, by default the weighted average.
    Needs n >= 2f + 3 (and n >= m + f) updates a round. Memory: O(n x largest layer) beyond
    the updates themselves.
    """
    f = _whole("multi_krum", "num_malicious_nodes", num_malicious_nodes, 0)
    m = num_nodes_to_keep
    if m is not None:
        m = _whole("multi_krum", "num_nodes_to_keep", m, 1)
    label = f"multi_krum(num_malicious_nodes={f}" + (
        "" if m is None else f", num_nodes_to_keep={m}"
    )
    return _Krum(f, m, label + ")")


def bulyan(num_malicious_nodes: int) -> Aggregator:
    """Krum-select n - 2f updates, then average the n - 4f values nearest each median.

    El Mhamdi et al., 2018, with ``f = num_malicious_nodes``: Krum is applied n - 2f times,
    each time moving its pick from the pool to the selection; then, coordinate by
    coordinate, the n - 4f selected values closest to their median are averaged (a tie in
    distance keeps the smaller value). Unweighted. Needs n >= 4f + 3 updates a round.
    Memory: O(n x largest layer) beyond the updates themselves.
    """
    return _Bulyan(_whole("bulyan", "num_malicious_nodes", num_malicious_nodes, 0))


# --- named strategies -------------------------------------------------------------------


def refuse_chain(strategy: str, rule: str, options: Mapping[str, object]) -> None:
    """A chain given to a strategy with its own rule: say what to build instead, DP included."""
    if "aggregation" in options:
        raise ConfigError(
            f"{strategy} aggregates with {rule} and takes no aggregation=: for a custom chain "
            "build FedAvg(aggregation=chain(...)); for differential privacy build "
            f"FedAvg(aggregation=chain(dp_fixed_clip(...))). {strategy} cannot be combined "
            "with differential privacy: DP needs each node's influence on the average "
            f"bounded, and {rule} lets one node change how the others count"
        )


class FedMedian(FedAvg):
    """FedAvg with the coordinate-wise median in place of the weighted mean.

    Yin et al., 2018, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical
    Rates", https://arxiv.org/abs/1803.01498. ``chain(median())``.

    Args:
        **options: FedAvg's keyword arguments (``min_train_nodes``, ``fraction_train``, ...).
    """

    def __init__(self, **options: Unpack[FedAvgOptions]) -> None:
        refuse_chain("FedMedian", "the median", options)
        super().__init__(aggregation=chain(median()), **options)


class FedTrimmedAvg(FedAvg):
    """FedAvg with the coordinate-wise trimmed mean in place of the weighted mean.

    Yin et al., 2018, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical
    Rates", https://arxiv.org/abs/1803.01498. ``chain(trimmed_mean(beta))``.

    Args:
        beta: the share of values cut from each end of every coordinate (``0 <= beta < 0.5``).
        **options: FedAvg's keyword arguments (``min_train_nodes``, ``fraction_train``, ...).
    """

    def __init__(self, *, beta: float = 0.2, **options: Unpack[FedAvgOptions]) -> None:
        refuse_chain("FedTrimmedAvg", "a trimmed mean", options)
        self.beta = beta
        super().__init__(aggregation=chain(trimmed_mean(beta)), **options)


class Krum(FedAvg):
    """FedAvg that takes the one model closest to its neighbours as the next global model.

    Blanchard et al., 2017, "Machine Learning with Adversaries: Byzantine Tolerant Gradient
    Descent", NeurIPS,
    https://papers.nips.cc/paper/2017/hash/f4b9ec30ad9f68f89b29639786cb62ef-Abstract.html.
    ``chain(krum(num_malicious_nodes))``.

    Args:
        num_malicious_nodes: ``f``, the most nodes a round may have that send anything at all.
            Needs ``min_train_nodes >= 2f + 3``, checked here.
        **options: FedAvg's keyword arguments (``min_train_nodes``, ``fraction_train``, ...).
    """

    def __init__(self, *, num_malicious_nodes: int = 0, **options: Unpack[FedAvgOptions]) -> None:
        refuse_chain("Krum", "Krum's selection", options)
        self.num_malicious_nodes = num_malicious_nodes
        _enough_nodes(
            options, 2 * _whole("Krum", "num_malicious_nodes", num_malicious_nodes, 0) + 3
        )
        super().__init__(aggregation=chain(krum(num_malicious_nodes)), **options)


class MultiKrum(FedAvg):
    """FedAvg over the models of lowest Krum score only.

    Blanchard et al., 2017, "Machine Learning with Adversaries: Byzantine Tolerant Gradient
    Descent", NeurIPS,
    https://papers.nips.cc/paper/2017/hash/f4b9ec30ad9f68f89b29639786cb62ef-Abstract.html.
    ``chain(multi_krum(num_malicious_nodes, num_nodes_to_keep),
    weighted_average(use_weights=False))``: the kept models are
    averaged without the weights nodes report, as in the paper (an attacker could claim any).

    Args:
        num_malicious_nodes: ``f``, the most nodes a round may have that send anything at all.
            Needs ``min_train_nodes >= 2f + 3``, checked here.
        num_nodes_to_keep: ``m``, how many models to average (default: ``n - f``).
        **options: FedAvg's keyword arguments (``min_train_nodes``, ``fraction_train``, ...).
    """

    def __init__(
        self,
        *,
        num_malicious_nodes: int = 0,
        num_nodes_to_keep: int | None = None,
        **options: Unpack[FedAvgOptions],
    ) -> None:
        refuse_chain("MultiKrum", "Krum's selection", options)
        self.num_malicious_nodes = num_malicious_nodes
        self.num_nodes_to_keep = num_nodes_to_keep
        f = _whole("MultiKrum", "num_malicious_nodes", num_malicious_nodes, 0)
        _enough_nodes(options, max(2 * f + 3, f + (num_nodes_to_keep or 0)))
        selection = multi_krum(num_malicious_nodes, num_nodes_to_keep)
        # Plain mean of the kept models, as in the paper: reported weights are not trusted.
        mean = weighted_average(use_weights=False)
        super().__init__(aggregation=chain(selection, mean), **options)


class Bulyan(FedAvg):
    """FedAvg with Bulyan's aggregation: Krum selection, then a trimmed mean by the median.

    El Mhamdi et al., 2018, "The Hidden Vulnerability of Distributed Learning in Byzantium",
    https://arxiv.org/abs/1802.07927. ``chain(bulyan(num_malicious_nodes))``.

    Args:
        num_malicious_nodes: ``f``, the most nodes a round may have that send anything at all.
            Needs ``min_train_nodes >= 4f + 3``, checked here.
        **options: FedAvg's keyword arguments (``min_train_nodes``, ``fraction_train``, ...).
    """

    def __init__(self, *, num_malicious_nodes: int = 0, **options: Unpack[FedAvgOptions]) -> None:
        refuse_chain("Bulyan", "Krum's selection and a trimmed mean", options)
        self.num_malicious_nodes = num_malicious_nodes
        _enough_nodes(
            options, 4 * _whole("Bulyan", "num_malicious_nodes", num_malicious_nodes, 0) + 3
        )
        super().__init__(aggregation=chain(bulyan(num_malicious_nodes)), **options)


# --- implementations --------------------------------------------------------------------


class _NormBound(UpdateFilter):
    streaming = True

    def __init__(self, max_norm: float) -> None:
        self.max_norm = max_norm

    def filter_one(self, update: Update, current: ArrayRecord) -> Update | None:
        """The update, or a copy whose delta from ``current`` is scaled to ``max_norm``."""
        arrays = clip_delta(update.arrays, current, self.max_norm)
        return update if arrays is update.arrays else dataclasses.replace(update, arrays=arrays)

    def __repr__(self) -> str:
        return f"norm_bound(max_norm={self.max_norm})"


class _Median(Aggregator):
    def aggregate(self, updates: Iterable[Update], current: ArrayRecord) -> ArrayRecord | None:
        """The coordinate-wise median, one layer at a time."""
        held = list(updates)
        if not held:
            return None
        return _layerwise(held, current, _median)

    def __repr__(self) -> str:
        return "median()"


class _TrimmedMean(Aggregator):
    def __init__(self, beta: float) -> None:
        self.beta = beta

    def aggregate(self, updates: Iterable[Update], current: ArrayRecord) -> ArrayRecord | None:
        """The coordinate-wise trimmed mean, one layer at a time."""
        held = list(updates)
        if not held:
            return None
        n = len(held)
        cut = math.floor(round(self.beta * n, 9))  # 0.29 * 100 is 28.999...: still cut 29
        cut = min(cut, (n - 1) // 2)  # beta a hair below 0.5 must leave a value
        return _layerwise(held, current, lambda rows: _trimmed(rows, cut))

    def __repr__(self) -> str:
        return f"trimmed_mean(beta={self.beta})"


def _median(rows: _Floats) -> _Floats:
    """Each column's median: its middle value, or the mean of its middle two.

    Sorts ``rows`` in place (faster than NumPy's median along the first axis).
    """
    rows.sort(axis=0)
    half = len(rows) // 2
    middle: _Floats = rows[half] if len(rows) % 2 else rows[half - 1] / 2 + rows[half] / 2
    return middle


def _trimmed(rows: _Floats, cut: int) -> _Floats:
    """The mean of each column without its ``cut`` smallest and largest values.

    Sorted (in place), so the sum runs in value order: the same bits whatever the reply order.
    """
    rows.sort(axis=0)
    kept: _Floats = rows[cut : len(rows) - cut].mean(axis=0)
    return kept


class _Krum(UpdateFilter):
    def __init__(self, f: int, m: int | None, label: str) -> None:
        self.f = f
        self.m = m
        self._label = label

    @property
    def _needed(self) -> tuple[int, str]:
        """The fewest updates a round needs, and the formula that gives it."""
        if self.m is not None and self.m + self.f > 2 * self.f + 3:
            return self.m + self.f, "m + f"
        return 2 * self.f + 3, "2f + 3"

    def check(self, min_train_nodes: int) -> None:
        """Krum needs 2f + 3 updates a round (and m + f to keep m)."""
        needed, formula = self._needed
        _check_round_size(self._label, formula, needed, min_train_nodes)

    def filter(self, updates: Sequence[Update], current: ArrayRecord) -> list[Update]:
        """The ``m`` updates of lowest score, in send order."""
        require_updates(self._label, self._needed[0], len(updates))
        keep = self.m if self.m is not None else len(updates) - self.f
        chosen = _krum_ranking(_squared_distances(updates, current), self.f)[:keep]
        return [updates[i] for i in sorted(chosen)]

    def __repr__(self) -> str:
        return self._label


class _Bulyan(Aggregator):
    def __init__(self, f: int) -> None:
        self.f = f

    def check(self, min_train_nodes: int) -> None:
        """Bulyan needs 4f + 3 updates a round."""
        _check_round_size(repr(self), "4f + 3", 4 * self.f + 3, min_train_nodes)

    def aggregate(self, updates: Iterable[Update], current: ArrayRecord) -> ArrayRecord | None:
        """Krum selection of n - 2f updates, then their mean around the median, per layer."""
        held = list(updates)
        require_updates(repr(self), 4 * self.f + 3, len(held))
        pool = list(range(len(held)))
        distances = _squared_distances(held, current)
        selected: list[int] = []
        for _ in range(len(held) - 2 * self.f):
            ranking = _krum_ranking(distances[np.ix_(pool, pool)], self.f)
            selected.append(pool.pop(int(ranking[0])))
        keep = len(selected) - 2 * self.f
        chosen = [held[i] for i in sorted(selected)]
        return _layerwise(chosen, current, lambda rows: _nearest_median_mean(rows, keep))

    def __repr__(self) -> str:
        return f"bulyan(num_malicious_nodes={self.f})"


def _nearest_median_mean(rows: _Floats, keep: int) -> _Floats:
    """Per column, the mean of the ``keep`` values closest to the column's median."""
    middle = _median(rows)  # sorts the columns: a tie in distance keeps the smaller value
    order = np.argsort(np.abs(rows - middle), axis=0, kind="stable")[:keep]
    mean: _Floats = np.take_along_axis(rows, order, axis=0).mean(axis=0)
    return mean


def _krum_ranking(distances: _Floats, f: int) -> np.ndarray[Any, Any]:
    """The updates' indices from the lowest Krum score to the highest.

    A score is the sum of squared distances to the ``n - f - 2`` nearest others (at least 1,
    at most ``n - 1``: Bulyan's last picks run on pools too small for ``n - f - 2``). A tie
    (two mutual nearest neighbours always tie at 1 neighbour) goes to the update closer to
    its next-nearest others, then to the earlier one: the reply order only decides between
    updates that are alike, so the pick is generically the same whatever order they came in.
    """
    n = len(distances)
    if n < 2:
        return np.arange(n)
    nearest = min(max(n - f - 2, 1), n - 1)
    # Each row's smallest entry is its own 0 (or an identical update's 0): skip one.
    sums = np.cumsum(np.sort(distances, axis=1)[:, 1:], axis=1)  # [i, j]: j + 1 nearest
    ranking: np.ndarray[Any, Any] = np.lexsort([sums[:, j] for j in range(n - 2, nearest - 2, -1)])
    return ranking  # (lexsort: the last key leads)


def _squared_distances(updates: Sequence[Update], current: ArrayRecord) -> _Floats:
    """The n x n squared L2 distances between the updates, summed layer by layer.

    Differences, not the Gram-matrix shortcut: identical updates are exactly 0 apart.
    """
    n = len(updates)
    upper = np.zeros((n, n))
    for name, like in current.items():
        rows = _stack(updates, name, like)
        for i in range(n - 1):
            diff = rows[i + 1 :] - rows[i]
            upper[i, i + 1 :] += np.einsum("ij,ij->i", diff, diff)
        del rows
    distances: _Floats = upper + upper.T
    return distances


# --- layers -----------------------------------------------------------------------------


def _layerwise(
    updates: Sequence[Update], current: ArrayRecord, reduce: Callable[[_Floats], _Floats]
) -> ArrayRecord:
    """``reduce`` (n x size -> size) applied to one stacked layer at a time, cast back."""
    return ArrayRecord(
        (name, _unstack(reduce(_stack(updates, name, like)), like))
        for name, like in current.items()
    )


def _stack(updates: Sequence[Update], name: str, like: Array) -> _Floats:
    """Layer ``name`` of every update as the rows of an n x size float64 matrix.

    A complex layer is stacked as (real, imaginary) pairs, so each part is its own column.
    """
    size = like.numpy().size * (2 if like.dtype.kind == "c" else 1)
    rows = np.empty((len(updates), size))
    for row, update in zip(rows, updates, strict=True):
        row[:] = _flat(update.arrays[name].numpy())
    return rows


# --- checks -----------------------------------------------------------------------------


def _whole(piece: str, name: str, value: object, minimum: int) -> int:
    """``value`` as an int, or ConfigError unless it is a whole number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(
            f"{piece}: {name} must be a whole number {minimum} or more, got {value!r}"
        )
    return int(value)


def _check_round_size(label: str, formula: str, needed: int, min_train_nodes: int) -> None:
    """ConfigError, before any round, if rounds of ``min_train_nodes`` updates are too small."""
    if min_train_nodes < needed:
        fix = (
            " or lower num_nodes_to_keep (m)"
            if formula == "m + f"
            else " or lower num_malicious_nodes (f)"
        )
        raise ConfigError(
            f"{label} needs at least {formula} = {needed} updates a round (f: "
            f"num_malicious_nodes), but min_train_nodes={min_train_nodes}: raise "
            f"min_train_nodes to {needed}{fix if needed > 3 else ''}"
        )


def _enough_nodes(options: FedAvgOptions, needed: int) -> None:
    """A preset's ``min_train_nodes`` defaults to what its rule needs (FedAvg's 2 is too few).

    Its rounds then wait for that many nodes too: a phase waits for its own minimum when
    ``min_available_nodes`` is lower.
    """
    options.setdefault("min_train_nodes", needed)
