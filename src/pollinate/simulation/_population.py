"""The population model: how fast, how well connected and when available each virtual node is.

A :class:`PopulationModel` describes a population (distributions, an availability pattern,
a per-task dropout probability, a seed); ``model.build(num_nodes)`` materializes it into a
:class:`Population` the simulation grid consults on its virtual clock. Everything is drawn
from seeded generators, so the same model and ``num_nodes`` always give the same population,
and node i's values do not depend on how many nodes there are. Per-node values live in numpy
arrays: 100,000 nodes build in milliseconds.

Speed is relative to the machine running the simulation (2.0 trains twice as fast);
bandwidths are bytes per second (``math.inf``: free). A model changes only what it names:
``PopulationModel()`` is every node at speed 1, free bandwidth, always available, no dropout.

Availability patterns (``t`` is simulated seconds since the run began, ``t = 0`` is midnight):

- :class:`Always`: every node, all the time.
- :class:`Bernoulli`: time is cut into periods of ``period_s``; node n is available during
  period k = floor(t / period_s) with probability ``p``, independently for each (node, period).
- :class:`Diurnal`: node n is available for ``hours_per_day`` hours a day, from a start hour
  drawn once per node uniformly in ``start_hour ± spread_hours / 2`` (mod 24): the window
  ``[start + k·day, start + k·day + hours_per_day·3600)`` for every day k.
- A trace (:meth:`PopulationModel.from_trace`): explicit intervals per node.

Trace CSV format (UTF-8, one row per node, a header row first)::

    node,speed,download_bps,upload_bps,availability
    1,1.0,5e6,1e6,
    2,0.25,inf,inf,0-3600;7200-10800

``node`` runs 1..N, each id once (rows in any order); ``speed`` is a finite number >= 1e-9;
``download_bps``/``upload_bps`` are bytes per second >= 1e-9 (``inf``: free);
``availability`` is ``start-end`` intervals in seconds separated by ``;``, sorted, not
overlapping (touching ones merge), ``end`` may be ``inf``; an empty field means always
available. A run of ``num_nodes`` uses the trace's nodes 1..num_nodes; a trace with fewer
nodes than the run is refused (cycling rows would silently duplicate devices). With
``repeat_s`` R (``from_trace(path, repeat_s=86400)``) the intervals recur every R seconds:
they must lie within ``[0, R]``, and one ending at R runs on into one starting at 0.

Bounds keep every simulated time finite: a LogNormal sigma is at most 3, a Pareto alpha at
least 1 (so a million nodes draw no speed near 0), a Bernoulli period or trace repetition
between 1 ms and 1e9 s, and ``build`` refuses a
population in which any drawn speed is not finite or below 1e-9, or any bandwidth below 1e-9
(one ConfigError naming the node).

Per-task dropout: the node's task_index-th task is lost with probability ``dropout``, at a
fraction of its duration drawn uniformly in [0, 1). The draws that must not depend on the
order things happen in (availability per period, dropout per task) come from a counter-based
hash of (seed, stream, node, counter); the rest from ``numpy.random.default_rng([seed, stream])``.

A config table (``PopulationModel.from_config``, a pyproject ``population`` table) names the
same things in kebab-case; :data:`CONFIG_DEFAULTS` lists every key with its default::

    speed = "lognormal"          # constant | lognormal | pareto; speed-median (the constant),
    speed-sigma = 1.0            # speed-sigma (lognormal), speed-alpha (pareto)
    bandwidth = "lognormal"      # free | constant | lognormal | pareto; download-bps and
    download-bps = 5e6           # upload-bps are the medians (the constants),
    upload-bps = 1e6             # bandwidth-sigma / bandwidth-alpha the spread
    availability = "diurnal"     # always | bernoulli (availability-p, period-s)
    hours-per-day = 8            # | diurnal (hours-per-day, start-hour, spread-hours)
    dropout = 0.1
    seconds-per-example = 0.01
    seed = 0
    # trace = "devices.csv"      # instead of speed, bandwidth and availability;
    # trace-repeat-s = 86400     # relative to the pyproject's folder

A key that does not apply to the choice made (``hours-per-day`` with Bernoulli availability)
is refused, as is an unknown one.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError

__all__ = [
    "Always",
    "Availability",
    "Bandwidth",
    "Bernoulli",
    "Constant",
    "Device",
    "Distribution",
    "Diurnal",
    "LogNormal",
    "Pareto",
    "Population",
    "PopulationModel",
    "Trace",
]

DAY_S = 86_400.0
TRACE_HEADER = ("node", "speed", "download_bps", "upload_bps", "availability")
MAX_TRACE_BYTES = 256 * 1024 * 1024
# How far the searches through Bernoulli periods go before answering math.inf.
MAX_PERIODS_UNTIL = 1 << 20
MAX_PERIODS_NEXT = 1024
DEFAULT_DOWNLOAD_BPS = 5e6
DEFAULT_UPLOAD_BPS = 1e6
# Bounds that keep every simulated time finite: speeds and bandwidths (per second) at least
# MIN_RATE, availability periods at least MIN_PERIOD_S, spreads no wider than these.
MIN_RATE = 1e-9
MIN_PERIOD_S = 1e-3
MAX_PERIOD_S = 1e9  # about 30 years: past it, a simulated time loses its seconds
MAX_SIGMA = 3.0
MIN_ALPHA = 1.0

# Streams keep each quantity's draws independent of the others' settings.
_SPEED, _DOWNLOAD, _UPLOAD, _PHASE, _PERIOD, _DROPOUT, _DROP_AT = range(1, 8)

Floats = NDArray[np.float64]


# ---- seeded draws ------------------------------------------------------------------------


_M64, _C1, _C2, _GOLDEN = (1 << 64) - 1, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0x9E3779B97F4A7C15


def _mix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """SplitMix64's finalizer: a bijection of uint64 that scatters nearby inputs."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(_C1)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(_C2)
    mixed: NDArray[np.uint64] = x ^ (x >> np.uint64(31))
    return mixed


def _mix_one(x: int) -> int:
    """:func:`_mix` of one value in plain integers: the same bits, without numpy's overhead."""
    x = ((x ^ (x >> 30)) * _C1) & _M64
    x = ((x ^ (x >> 27)) * _C2) & _M64
    return x ^ (x >> 31)


def _uniform_one(seed: int, stream: int, node: int, counter: int) -> float:
    """One :func:`_uniform` draw (equal to it bit for bit), for the per-task questions."""
    key = _mix_one((seed & 0x7FFF_FFFF_FFFF_FFFF) ^ ((stream << 56) & _M64))
    h = _mix_one(key ^ _mix_one(node & _M64))
    h = _mix_one(h ^ _mix_one(((counter & _M64) + _GOLDEN) & _M64))
    return (h >> 11) * (1.0 / (1 << 53))


def _as_u64(values: NDArray[np.int64] | Sequence[int] | int) -> NDArray[np.uint64]:
    """Integers (negative ones wrap) as a uint64 array of at least one dimension."""
    wrapped: NDArray[np.uint64] = np.atleast_1d(np.asarray(values, dtype=np.int64)).view(np.uint64)
    return wrapped


def _uniform(
    seed: int, stream: int, nodes: NDArray[np.int64] | int, counters: NDArray[np.int64] | int
) -> Floats:
    """Uniform [0, 1) draws keyed by (seed, stream, node, counter) alone, broadcast together."""
    key = _mix(_as_u64(seed & 0x7FFF_FFFF_FFFF_FFFF) ^ (_as_u64(stream) << np.uint64(56)))
    h = _mix(key ^ _mix(_as_u64(nodes)))
    h = _mix(h ^ _mix(_as_u64(counters) + np.uint64(_GOLDEN)))
    draws: Floats = (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return draws


def _rng(seed: int, stream: int) -> np.random.Generator:
    """The generator of one stream: node i's draw is the i-th, whatever the node count."""
    return np.random.default_rng([seed, stream])


# ---- distributions -----------------------------------------------------------------------


def _positive(name: str, value: float, *, finite: bool = True) -> None:
    """Refuse a value that is not a positive number (or not finite, when it must be)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if not ok or (finite and not math.isfinite(value)):
        kind = "a positive finite number" if finite else "a positive number (inf: free)"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")


def _at_least(name: str, value: float, low: float, unit: str) -> None:
    """Refuse a value that is not a finite number >= ``low``."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and low <= value < math.inf):
        raise ConfigError(f"{name} must be at least {low:g} ({unit}) and finite, got {value!r}")


@dataclass(frozen=True, slots=True)
class Constant:
    """Every node gets ``value`` (``math.inf`` for a free bandwidth)."""

    value: float

    def __post_init__(self) -> None:
        _positive("Constant value", self.value, finite=False)

    def sample(self, rng: np.random.Generator, n: int) -> Floats:
        """``n`` copies of the value."""
        return np.full(n, float(self.value))


@dataclass(frozen=True, slots=True)
class LogNormal:
    """``median · exp(sigma · Z)``, Z standard normal: sigma 1.0 puts the middle 50% within 2x.

    The usual model of device speed and bandwidth spread: sigma 0 is constant, sigma 1 spans
    about 27x between the 5th and 95th percentiles, sigma 2 about 700x.
    """

    median: float = 1.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        _positive("LogNormal median", self.median)
        if not (isinstance(self.sigma, (int, float)) and 0 <= self.sigma <= MAX_SIGMA):
            raise ConfigError(
                f"LogNormal sigma must be a number >= 0 and at most {MAX_SIGMA:g} "
                f"(sigma 3 already spans 10^5x between the 0.1th and 99.9th percentiles), got "
                f"{self.sigma!r}"
            )

    def sample(self, rng: np.random.Generator, n: int) -> Floats:
        """``n`` draws."""
        with np.errstate(over="ignore"):  # inf: refused for a speed, free for a bandwidth
            return self.median * np.exp(self.sigma * rng.standard_normal(n))


@dataclass(frozen=True, slots=True)
class Pareto:
    """A heavy tail of slow nodes: ``median / X`` with X Pareto(alpha) of median 1.

    Models the stragglers of device traces (FedScale): most nodes near the median, none
    faster than ``median · 2^(1/alpha)``, and a power-law tail of slow ones: with alpha 1.5
    about 1.6% are 10x slower than the median and 0.05% 100x slower. Smaller alpha: heavier.
    """

    median: float = 1.0
    alpha: float = 1.5

    def __post_init__(self) -> None:
        _positive("Pareto median", self.median)
        _at_least("Pareto alpha", self.alpha, MIN_ALPHA, "smaller is a heavier tail")

    def sample(self, rng: np.random.Generator, n: int) -> Floats:
        """``n`` draws."""
        x_min = 2.0 ** (-1.0 / self.alpha)  # the Pareto scale whose median is 1
        with np.errstate(over="ignore"):  # inf: speed 0, which build refuses
            slowdown = x_min * (1.0 - rng.random(n)) ** (-1.0 / self.alpha)
        draws: Floats = self.median / slowdown
        return draws


Distribution = Constant | LogNormal | Pareto
"""A per-node quantity's distribution."""


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """Download (server to node) and upload (node to server) bytes per second.

    The defaults model phones on mobile networks: log-normal around 5 MB/s down and 1 MB/s
    up, sigma 1.0. ``Bandwidth.free()`` makes communication cost nothing.
    """

    download: Distribution = LogNormal(DEFAULT_DOWNLOAD_BPS, 1.0)
    upload: Distribution = LogNormal(DEFAULT_UPLOAD_BPS, 1.0)

    def __post_init__(self) -> None:
        for name in ("download", "upload"):
            _check_piece(name, getattr(self, name), (Constant, LogNormal, Pareto), "Constant(5e6)")

    @classmethod
    def free(cls) -> Bandwidth:
        """Bandwidth that costs no simulated time: ``math.inf`` both ways."""
        return cls(Constant(math.inf), Constant(math.inf))


# ---- availability ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Always:
    """Every node available all the time."""


@dataclass(frozen=True, slots=True)
class Bernoulli:
    """Node n is available in period k (``[k·period_s, (k+1)·period_s)``) with probability p.

    Independent per (node, period): models phones that are idle, charging and on Wi-Fi some
    of the time, with no daily rhythm. ``next_available`` looks 1,024 periods ahead and
    ``available_until`` 2^20; past that (or for a count more than 10 standard deviations
    above ``num_nodes · p``) they answer ``math.inf``.
    """

    p: float
    period_s: float = 3600.0

    def __post_init__(self) -> None:
        if not (isinstance(self.p, (int, float)) and 0.0 <= self.p <= 1.0):
            raise ConfigError(f"Bernoulli p must be between 0 and 1, got {self.p!r}")
        _at_least("Bernoulli period_s", self.period_s, MIN_PERIOD_S, "seconds")
        if self.period_s > MAX_PERIOD_S:
            raise ConfigError(
                f"Bernoulli period_s must be at most {MAX_PERIOD_S:g} seconds, "
                f"got {self.period_s!r}"
            )


@dataclass(frozen=True, slots=True)
class Diurnal:
    """Each node available ``hours_per_day`` hours a day, from a seeded start hour.

    The start hour is drawn once per node uniformly in ``start_hour ± spread_hours / 2``
    (mod 24; t = 0 is midnight). The defaults, 22:00 ± 12 h, spread starts over the whole
    day (the world's time zones); a small spread, e.g. 4, makes the nightly peak of phones
    charging in one time zone.
    """

    hours_per_day: float = 8.0
    start_hour: float = 22.0
    spread_hours: float = 24.0

    def __post_init__(self) -> None:
        h = self.hours_per_day
        if not (isinstance(h, (int, float)) and 0 < h <= 24):
            raise ConfigError(f"Diurnal hours_per_day must be in (0, 24], got {h!r}")
        if not (isinstance(self.start_hour, (int, float)) and 0 <= self.start_hour < 24):
            raise ConfigError(f"Diurnal start_hour must be in [0, 24), got {self.start_hour!r}")
        if not (isinstance(self.spread_hours, (int, float)) and 0 <= self.spread_hours <= 24):
            raise ConfigError(f"Diurnal spread_hours must be in [0, 24], got {self.spread_hours!r}")


Availability = Always | Bernoulli | Diurnal
"""A built-in availability pattern (a trace brings its own intervals)."""


class _Pattern(Protocol):
    """A materialized availability pattern: the three questions the grid asks."""

    def nodes(self, t: float) -> Sequence[int]: ...

    def until(self, node_id: int, t: float) -> float: ...

    def next(self, t: float, count: int) -> float: ...


def _ids(mask: NDArray[np.bool_]) -> list[int]:
    """The 1-based ids where ``mask`` is true, sorted."""
    ids: list[int] = (np.flatnonzero(mask) + 1).tolist()
    return ids


def _sweep(t: float, current: int, times: Floats, deltas: NDArray[np.int64], count: int) -> float:
    """The first event time after which at least ``count`` nodes are available (inf: none).

    ``current`` nodes are available at ``t``; each event (time > t) adds or removes one.
    Events at the same time apply together.
    """
    if current >= count:
        return t
    order = np.argsort(times, kind="stable")
    times, running = times[order], current + np.cumsum(deltas[order])
    last_of_time = np.append(times[1:] != times[:-1], True)
    hits = np.flatnonzero(last_of_time & (running >= count))
    return float(times[hits[0]]) if hits.size else math.inf


class _AlwaysPattern:
    """Everyone, always."""

    def __init__(self, num_nodes: int) -> None:
        self._n = num_nodes

    def nodes(self, t: float) -> Sequence[int]:
        return range(1, self._n + 1)

    def until(self, node_id: int, t: float) -> float:
        return math.inf

    def next(self, t: float, count: int) -> float:
        return t if count <= self._n else math.inf


def _period_index(t: float, period: float) -> int:
    """The k with ``k·period <= t < (k+1)·period`` in float arithmetic, as event times are."""
    k = math.floor(t / period)
    if (k + 1) * period <= t:
        k += 1
    elif k * period > t:
        k -= 1
    return k


class _BernoulliPattern:
    """Availability redrawn per (node, period) from the counter-based hash."""

    def __init__(self, pattern: Bernoulli, num_nodes: int, seed: int) -> None:
        self._p, self._period, self._seed = pattern.p, float(pattern.period_s), seed
        self._all = np.arange(1, num_nodes + 1, dtype=np.int64)

    def _mask(self, k: int) -> NDArray[np.bool_]:
        return _uniform(self._seed, _PERIOD, self._all, k) < self._p

    def nodes(self, t: float) -> Sequence[int]:
        if self._p >= 1.0:
            return range(1, self._all.size + 1)
        return _ids(self._mask(_period_index(t, self._period)))

    def until(self, node_id: int, t: float) -> float:
        k = _period_index(t, self._period)
        if _uniform_one(self._seed, _PERIOD, node_id, k) >= self._p:
            return t
        if self._p >= 1.0:
            return math.inf
        first, chunk = k + 1, 256
        while first <= k + MAX_PERIODS_UNTIL:
            periods = np.arange(first, first + chunk, dtype=np.int64)
            gone = np.flatnonzero(_uniform(self._seed, _PERIOD, node_id, periods) >= self._p)
            if gone.size:
                return float(periods[gone[0]]) * self._period
            first, chunk = first + chunk, min(chunk * 4, 1 << 16)
        return math.inf

    def next(self, t: float, count: int) -> float:
        if count <= 0 or (self._p >= 1.0 and count <= self._all.size):
            return t
        n, p = self._all.size, self._p
        if count > n or p <= 0.0 or count > n * p + 10.0 * math.sqrt(n * p * (1 - p)) + 10.0:
            return math.inf
        k = _period_index(t, self._period)
        for j in range(k, k + MAX_PERIODS_NEXT):
            if np.count_nonzero(self._mask(j)) >= count:
                return t if j == k else j * self._period
        return math.inf


class _DiurnalPattern:
    """A daily window per node: ``[phase + k·day, phase + k·day + window)``."""

    def __init__(self, pattern: Diurnal, num_nodes: int, seed: int) -> None:
        offset = _rng(seed, _PHASE).random(num_nodes) - 0.5
        hours = (pattern.start_hour + pattern.spread_hours * offset) % 24.0
        # Whole seconds keep the event times exact, so a node is available at its own start.
        self._phase = np.floor(hours * 3600.0) % DAY_S
        self._window = max(1, round(pattern.hours_per_day * 3600.0))
        self._always = self._window >= DAY_S

    def _window_start(self, t: float, phase: Floats) -> Floats:
        """The start of each node's latest window starting at or before ``t``."""
        k = np.floor((t - phase) / DAY_S)
        k += (phase + (k + 1) * DAY_S) <= t
        k -= (phase + k * DAY_S) > t
        start: Floats = phase + k * DAY_S
        return start

    def nodes(self, t: float) -> Sequence[int]:
        if self._always:
            return range(1, self._phase.size + 1)
        return _ids(t < self._window_start(t, self._phase) + self._window)

    def until(self, node_id: int, t: float) -> float:
        if self._always:
            return math.inf
        end = float(self._window_start(t, self._phase[node_id - 1 : node_id])[0]) + self._window
        return end if t < end else t

    def next(self, t: float, count: int) -> float:
        if self._always or count <= 0:
            return t if count <= self._phase.size else math.inf
        if count > self._phase.size:
            return math.inf
        start = self._window_start(t, self._phase)
        available = t < start + self._window
        following = start + DAY_S
        times = np.concatenate(
            [start[available] + self._window, following, following + self._window]
        )
        deltas = np.concatenate(
            [
                np.full(int(available.sum()), -1, dtype=np.int64),
                np.ones(following.size, dtype=np.int64),
                np.full(following.size, -1, dtype=np.int64),
            ]
        )
        return _sweep(t, int(available.sum()), times, deltas, count)


class _TracePattern:
    """Explicit intervals per node (CSR arrays); nodes with none are always available.

    With ``repeat_s`` R the intervals recur: period k holds ``[k·R + start, k·R + end)``.
    """

    def __init__(self, trace: Trace, num_nodes: int) -> None:
        self._n, self._repeat = num_nodes, trace.repeat_s
        self._always = trace.always[:num_nodes]
        end = int(trace.offsets[num_nodes])
        self._offsets = trace.offsets[: num_nodes + 1]
        self._starts, self._ends = trace.starts[:end], trace.ends[:end]
        self._owner = np.repeat(np.arange(num_nodes), np.diff(self._offsets))
        self._everyone = bool(self._always.all())

    def _period(self, t: float) -> int:
        """The repetition ``t`` falls in (0 for a trace that does not repeat)."""
        return 0 if self._repeat is None else _period_index(t, self._repeat)

    def _base(self, k: int) -> float:
        """Where repetition k begins: the same float expression everywhere, so events agree."""
        return 0.0 if self._repeat is None else k * self._repeat

    def _mask(self, t: float) -> NDArray[np.bool_]:
        mask: NDArray[np.bool_] = self._always.copy()
        base = self._base(self._period(t))
        inside = (base + self._starts <= t) & (t < base + self._ends)
        mask[self._owner[inside]] = True
        return mask

    def nodes(self, t: float) -> Sequence[int]:
        return range(1, self._n + 1) if self._everyone else _ids(self._mask(t))

    def until(self, node_id: int, t: float) -> float:
        if self._always[node_id - 1]:
            return math.inf
        k = self._period(t)
        base, lo, hi = self._base(k), int(self._offsets[node_id - 1]), int(self._offsets[node_id])
        j = lo + int(np.searchsorted(base + self._starts[lo:hi], t, side="right")) - 1
        if j < lo or t >= base + self._ends[j]:
            return t
        wraps = self._repeat is not None and self._ends[j] == self._repeat
        if wraps and self._starts[lo] == 0.0:  # the last interval runs on into the first
            return float(self._base(k + 1) + self._ends[lo])
        return float(base + self._ends[j])

    def next(self, t: float, count: int) -> float:
        if count > self._n:
            return math.inf
        k = self._period(t)
        times, deltas = [], []
        for base in {self._base(k), self._base(k + 1)}:  # one repetition ahead covers them all
            starts, ends = base + self._starts, base + self._ends
            later, ending = starts > t, (ends > t) & np.isfinite(ends)
            times += [starts[later], ends[ending]]
            deltas += [
                np.ones(int(later.sum()), np.int64),
                np.full(int(ending.sum()), -1, np.int64),
            ]
        return _sweep(
            t, int(self._mask(t).sum()), np.concatenate(times), np.concatenate(deltas), count
        )


# ---- the population ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Device:
    """One node's hardware: relative compute speed and bandwidths in bytes per second."""

    speed: float
    download_bps: float
    upload_bps: float


class Population:
    """A population materialized for ``num_nodes`` nodes: what the simulation grid consults.

    Immutable; node ids run 1..num_nodes. Made by :meth:`PopulationModel.build`.
    """

    def __init__(
        self,
        devices: tuple[Floats, Floats, Floats],
        pattern: _Pattern,
        *,
        dropout: float,
        seconds_per_example: float | None,
        seed: int,
    ) -> None:
        self._speed, self._download, self._upload = devices
        self._pattern = pattern
        self._dropout, self._seed = dropout, seed
        self.num_nodes: int = int(self._speed.size)
        self.seconds_per_example: float | None = seconds_per_example

    def _check(self, node_id: int) -> int:
        """The array index of ``node_id``; a ValueError for an id outside 1..num_nodes."""
        if not 1 <= node_id <= self.num_nodes:
            raise ValueError(f"node id {node_id} is outside 1..{self.num_nodes}")
        return node_id - 1

    def device(self, node_id: int) -> Device:
        """The node's speed and bandwidths."""
        i = self._check(node_id)
        return Device(float(self._speed[i]), float(self._download[i]), float(self._upload[i]))

    def available_nodes(self, t: float) -> Sequence[int]:
        """The sorted ids of the nodes available at simulated time ``t``."""
        return self._pattern.nodes(t)

    def available_until(self, node_id: int, t: float) -> float:
        """When a node available at ``t`` next goes away (inf: never; ``t``: it is away now)."""
        self._check(node_id)
        return self._pattern.until(node_id, t)

    def next_available(self, t: float, count: int) -> float:
        """The earliest ``t' >= t`` with at least ``count`` nodes available (inf: never)."""
        return self._pattern.next(t, count)

    def dropout_at(self, node_id: int, task_index: int) -> float | None:
        """None if the node's task_index-th task completes, else the fraction where it leaves.

        Keyed by (seed, node, task_index) alone, so independent of the order tasks run in.
        """
        self._check(node_id)
        draw = _uniform_one(self._seed, _DROPOUT, node_id, task_index)
        if draw >= self._dropout:
            return None
        return _uniform_one(self._seed, _DROP_AT, node_id, task_index)


# ---- traces ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Trace:
    """A device trace read from CSV (format in the module docstring), as arrays.

    ``starts``/``ends`` hold every node's intervals back to back; node i's are
    ``offsets[i-1]:offsets[i]``; ``always`` marks nodes with an empty availability field (or
    one covering the whole repetition); ``repeat_s``, when set, makes the intervals recur.
    """

    path: str
    speed: Floats
    download_bps: Floats
    upload_bps: Floats
    always: NDArray[np.bool_]
    offsets: NDArray[np.int64]
    starts: Floats
    ends: Floats
    repeat_s: float | None = None

    @property
    def num_nodes(self) -> int:
        """How many nodes the trace describes."""
        return int(self.speed.size)

    @classmethod
    def read(cls, path: str | os.PathLike[str], repeat_s: float | None = None) -> Trace:
        """Parse and validate a trace file: one ConfigError naming the line and fix if bad.

        ``repeat_s``: the intervals recur every ``repeat_s`` seconds (86400: a daily trace)
        and must lie within ``[0, repeat_s]``.
        """
        if repeat_s is not None:
            _at_least("population trace repeat_s", repeat_s, MIN_PERIOD_S, "seconds")
        return _TraceReader(str(path), repeat_s).read()


class _TraceReader:
    """Reads a trace CSV row by row, naming the file and line of the first problem."""

    def __init__(self, path: str, repeat_s: float | None) -> None:
        self.path, self.repeat_s = path, repeat_s
        self.line = 0
        self.rows: dict[int, tuple[float, float, float, list[tuple[float, float]]]] = {}
        self.first_line: dict[int, int] = {}

    def fail(self, problem: str, fix: str) -> ConfigError:
        where = f"{self.path}, line {self.line}" if self.line else self.path
        return ConfigError(f"population trace {where}: {problem}; {fix}")

    def read(self) -> Trace:
        try:
            size = os.path.getsize(self.path)
            if size > MAX_TRACE_BYTES:
                raise self.fail(
                    f"the file is {size:,} bytes, over the {MAX_TRACE_BYTES:,} limit",
                    "split the population or drop unused nodes",
                )
            with open(self.path, encoding="utf-8-sig", newline="") as f:
                self._rows(csv.reader(f))
        except FileNotFoundError:
            raise self.fail("no such file", "check the path") from None
        except UnicodeDecodeError as e:
            self.line = 0
            raise self.fail(f"not UTF-8 text ({e.reason})", "save it as UTF-8 CSV") from None
        except csv.Error as e:
            fix = (
                "a field holds at most 131,072 characters (about 10,000 intervals a node): "
                "for a pattern that recurs, give one period's intervals and trace-repeat-s"
                if "field larger than field limit" in str(e)
                else "fix the row's quoting and commas"
            )
            raise self.fail(f"not valid CSV ({e})", fix) from None
        except OSError as e:
            raise self.fail(f"cannot be read ({e.strerror})", "check the path") from None
        self.line = 0
        return self._trace()

    def _rows(self, reader: Iterator[list[str]]) -> None:
        """Check the header, then parse each non-blank row."""
        self.line = 1
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != TRACE_HEADER:
            raise self.fail(
                f"the header is {','.join(header or [])[:200]!r}",
                f"the first line must be {','.join(TRACE_HEADER)}",
            )
        while True:
            self.line += 1  # before reading, so a CSV error names its own line
            row = next(reader, None)
            if row is None:
                return
            if any(cell.strip() for cell in row):
                self._row(row)

    def _number(self, column: str, cell: str, *, finite: bool) -> float:
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if not value >= MIN_RATE or (finite and math.isinf(value)):
            need = (
                f"a finite number >= {MIN_RATE:g}" if finite else f"a number >= {MIN_RATE:g} or inf"
            )
            raise self.fail(f"{column} is {cell.strip()!r}", f"{column} must be {need}")
        return value

    def _row(self, row: list[str]) -> None:
        if len(row) != len(TRACE_HEADER):
            raise self.fail(
                f"the row has {len(row)} fields",
                f"each row needs {len(TRACE_HEADER)}: {','.join(TRACE_HEADER)}",
            )
        node_cell = row[0].strip()
        digits = node_cell.isascii() and node_cell.isdigit() and len(node_cell) <= 12
        if not digits or int(node_cell) < 1:
            raise self.fail(f"node is {node_cell[:20]!r}", "node ids are whole numbers from 1")
        node = int(node_cell)
        if node in self.rows:
            raise self.fail(
                f"node {node} appears again (first on line {self.first_line[node]})",
                "give each node one row",
            )
        speed = self._number("speed", row[1], finite=True)
        down = self._number("download_bps", row[2], finite=False)
        up = self._number("upload_bps", row[3], finite=False)
        self.rows[node] = (speed, down, up, self._intervals(row[4]))
        self.first_line[node] = self.line

    def _intervals(self, cell: str) -> list[tuple[float, float]]:
        merged: list[tuple[float, float]] = []
        for part in filter(None, (p.strip() for p in cell.split(";"))):
            start_s, dash, end_s = part.partition("-")
            try:
                start, end = float(start_s), float(end_s) if dash else math.nan
            except ValueError:
                start = end = math.nan
            if not (0 <= start < end) or math.isinf(start):
                raise self.fail(
                    f"availability interval {part!r} is not start-end seconds",
                    "write intervals as start-end with 0 <= start < end, e.g. 0-3600;7200-10800",
                )
            if merged and start < merged[-1][1]:
                raise self.fail(
                    f"availability interval {part!r} overlaps or precedes the one before it",
                    "list a node's intervals in time order without overlaps",
                )
            if self.repeat_s is not None and end > self.repeat_s:
                raise self.fail(
                    f"availability interval {part!r} ends after the repetition ({self.repeat_s:g})",
                    "keep a repeating trace's intervals within 0-repeat_s",
                )
            if merged and start == merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
            else:
                merged.append((start, end))
        return [] if merged == [(0.0, self.repeat_s)] else merged

    def _trace(self) -> Trace:
        n = len(self.rows)
        if n == 0:
            raise self.fail("no node rows", "add one row per node after the header")
        missing = sorted(set(range(1, n + 1)) - self.rows.keys())
        if missing:
            top = max(self.rows)
            raise self.fail(
                f"rows for {n} nodes, up to node {top}, but none for node {missing[0]}",
                f"add a row for node {missing[0]} (a trace's nodes are 1..N, each once), or "
                "renumber the rows 1..N without gaps",
            )
        ordered = [self.rows[i] for i in range(1, n + 1)]
        counts = [len(r[3]) for r in ordered]
        flat = [iv for r in ordered for iv in r[3]]
        return Trace(
            path=self.path,
            speed=np.array([r[0] for r in ordered]),
            download_bps=np.array([r[1] for r in ordered]),
            upload_bps=np.array([r[2] for r in ordered]),
            always=np.array([c == 0 for c in counts], dtype=bool),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            starts=np.array([iv[0] for iv in flat], dtype=np.float64),
            ends=np.array([iv[1] for iv in flat], dtype=np.float64),
            repeat_s=self.repeat_s,
        )


# ---- the model ---------------------------------------------------------------------------


def _check_piece(name: str, value: object, kinds: tuple[type, ...], example: str) -> None:
    """ConfigError if ``value`` is none of ``kinds`` (a config table's string, say)."""
    if isinstance(value, kinds):
        return
    names = ", ".join(kind.__name__ for kind in kinds)
    hint = (
        f"; the string form is for a config table (PopulationModel.from_config({{{name!r}: "
        f"{value!r}}}))"
        if isinstance(value, str)
        else ""
    )
    raise ConfigError(
        f"population {name} must be one of {names}, e.g. {name}={example}, got {value!r}{hint}"
    )


@dataclass(frozen=True)
class PopulationModel:
    """How a simulated population is drawn; ``build(num_nodes)`` materializes it.

    ``dropout`` is each task's probability of losing its node part-way; ``seconds_per_example``
    (None: measured compute) makes a task's compute ``seconds_per_example x num-examples``;
    ``trace`` (set by :meth:`from_trace`) supplies speed, bandwidth and availability instead.
    """

    speed: Distribution = Constant(1.0)
    bandwidth: Bandwidth = field(default_factory=Bandwidth.free)
    availability: Availability = Always()
    dropout: float = 0.0
    seconds_per_example: float | None = None
    seed: int = 0
    trace: Trace | None = None

    def __post_init__(self) -> None:
        _check_piece(
            "speed", self.speed, (Constant, LogNormal, Pareto), "Pareto(median=1.0, alpha=1.5)"
        )
        _check_piece("bandwidth", self.bandwidth, (Bandwidth,), "Bandwidth() or Bandwidth.free()")
        _check_piece(
            "availability",
            self.availability,
            (Always, Bernoulli, Diurnal),
            "Diurnal(hours_per_day=8)",
        )
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ConfigError(f"population dropout must be in [0, 1), got {self.dropout!r}")
        if self.seconds_per_example is not None:
            _positive("population seconds_per_example", self.seconds_per_example)
        if not (isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0):
            raise ConfigError(f"population seed must be an integer >= 0, got {self.seed!r}")
        if self.trace is not None and (
            self.speed != Constant(1.0)
            or self.bandwidth != Bandwidth.free()
            or self.availability != Always()
        ):
            raise ConfigError(
                "a population trace gives speed, bandwidth and availability itself; "
                "drop those settings or the trace"
            )

    @classmethod
    def from_trace(
        cls,
        path: str | os.PathLike[str],
        *,
        repeat_s: float | None = None,
        dropout: float = 0.0,
        seconds_per_example: float | None = None,
        seed: int = 0,
    ) -> PopulationModel:
        """A model whose nodes are a trace file's rows (format in the module docstring).

        ``repeat_s`` makes the availability intervals recur every ``repeat_s`` seconds.
        """
        trace = Trace.read(path, repeat_s)
        return cls(dropout=dropout, seconds_per_example=seconds_per_example, seed=seed, trace=trace)

    @classmethod
    def from_config(
        cls, table: Mapping[str, object], base_dir: str | os.PathLike[str] | None = None
    ) -> PopulationModel:
        """A model from a config table (a pyproject ``population`` table); keys in CONFIG_KEYS.

        A relative ``trace`` path is taken from ``base_dir`` (the pyproject's folder).
        """
        return _from_config(table, base_dir)

    def build(self, num_nodes: int) -> Population:
        """The population of nodes 1..num_nodes; the same model always gives the same one."""
        if not (isinstance(num_nodes, int) and not isinstance(num_nodes, bool) and num_nodes >= 1):
            raise ConfigError(f"a population needs num_nodes >= 1, got {num_nodes!r}")
        if self.trace is not None:
            devices, pattern = self._trace_parts(self.trace, num_nodes)
        else:
            devices = (
                self.speed.sample(_rng(self.seed, _SPEED), num_nodes),
                self.bandwidth.download.sample(_rng(self.seed, _DOWNLOAD), num_nodes),
                self.bandwidth.upload.sample(_rng(self.seed, _UPLOAD), num_nodes),
            )
            pattern = self._pattern(num_nodes)
            _check_drawn(self, devices)
        return Population(
            devices,
            pattern,
            dropout=float(self.dropout),
            seconds_per_example=self.seconds_per_example,
            seed=self.seed,
        )

    def _pattern(self, num_nodes: int) -> _Pattern:
        """The availability pattern materialized for ``num_nodes``."""
        if isinstance(self.availability, Bernoulli):
            return _BernoulliPattern(self.availability, num_nodes, self.seed)
        if isinstance(self.availability, Diurnal):
            return _DiurnalPattern(self.availability, num_nodes, self.seed)
        return _AlwaysPattern(num_nodes)

    @staticmethod
    def _trace_parts(
        trace: Trace, num_nodes: int
    ) -> tuple[tuple[Floats, Floats, Floats], _Pattern]:
        """Nodes 1..num_nodes of the trace; a trace that is too short is refused."""
        if num_nodes > trace.num_nodes:
            raise ConfigError(
                f"population trace {trace.path} has {trace.num_nodes} nodes but the run has "
                f"{num_nodes}; run with num-nodes <= {trace.num_nodes} or add rows to the trace"
            )
        devices = (
            trace.speed[:num_nodes],
            trace.download_bps[:num_nodes],
            trace.upload_bps[:num_nodes],
        )
        return devices, _TracePattern(trace, num_nodes)


def _check_drawn(model: PopulationModel, devices: tuple[Floats, Floats, Floats]) -> None:
    """Refuse a drawn speed or bandwidth that would make a task's time infinite or zero.

    Speeds must be finite and >= MIN_RATE; bandwidths >= MIN_RATE (inf: free).
    """
    draws = zip(
        ("speed", "download_bps", "upload_bps"),
        (model.speed, model.bandwidth.download, model.bandwidth.upload),
        devices,
        (True, False, False),
        strict=True,
    )
    for name, distribution, values, finite in draws:
        bad = ~(values >= MIN_RATE) | (np.isinf(values) if finite else False)
        if bad.any():
            node = int(np.argmax(bad)) + 1
            raise ConfigError(
                f"population {name} of node {node} is {values[node - 1]:g} (drawn from "
                f"{distribution}), but it must be finite and at least {MIN_RATE:g}; use a "
                "larger median or a smaller spread (sigma, or a larger alpha)"
            )


# ---- config tables -----------------------------------------------------------------------

CONFIG_DEFAULTS: dict[str, object] = {
    "speed": "constant",
    "speed-median": 1.0,
    "speed-sigma": 1.0,
    "speed-alpha": 1.5,
    "bandwidth": "free",
    "download-bps": DEFAULT_DOWNLOAD_BPS,
    "upload-bps": DEFAULT_UPLOAD_BPS,
    "bandwidth-sigma": 1.0,
    "bandwidth-alpha": 1.5,
    "availability": "always",
    "availability-p": 0.5,
    "period-s": 3600.0,
    "hours-per-day": 8.0,
    "start-hour": 22.0,
    "spread-hours": 24.0,
    "dropout": 0.0,
    "seconds-per-example": None,
    "seed": 0,
    "trace": None,
    "trace-repeat-s": None,
}
"""Every key a population config table may set, with its default."""

CONFIG_KEYS = tuple(CONFIG_DEFAULTS)
_COMMON_KEYS = ("dropout", "seconds-per-example", "seed", "trace", "trace-repeat-s")
# A key that only means something for some choices of another: (that key, those choices).
_APPLIES_TO = {
    "speed-sigma": ("speed", ("lognormal",)),
    "speed-alpha": ("speed", ("pareto",)),
    "download-bps": ("bandwidth", ("constant", "lognormal", "pareto")),
    "upload-bps": ("bandwidth", ("constant", "lognormal", "pareto")),
    "bandwidth-sigma": ("bandwidth", ("lognormal",)),
    "bandwidth-alpha": ("bandwidth", ("pareto",)),
    "availability-p": ("availability", ("bernoulli",)),
    "period-s": ("availability", ("bernoulli",)),
    "hours-per-day": ("availability", ("diurnal",)),
    "start-hour": ("availability", ("diurnal",)),
    "spread-hours": ("availability", ("diurnal",)),
}


class _Table:
    """Typed reads from a population config table, each mistake one ConfigError."""

    def __init__(self, table: Mapping[str, object]) -> None:
        unknown = sorted(set(table) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown population key {unknown[0]!r}; known keys: {', '.join(CONFIG_KEYS)}"
            )
        self.table, self.values = table, {**CONFIG_DEFAULTS, **table}

    def check_applies(self) -> None:
        """Refuse a key that means nothing for the choice made (a likely mistake)."""
        for key, (selector, choices) in _APPLIES_TO.items():
            if key in self.table and self.values[selector] not in choices:
                raise ConfigError(
                    f"population {key} applies only to {selector} = "
                    f"{' or '.join(repr(c) for c in choices)}; drop it or set {selector}"
                )

    def number(self, key: str) -> float:
        value = self.values[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"population {key} must be a number, got {value!r}")
        return float(value)

    def choice(self, key: str, options: tuple[str, ...]) -> str:
        value = self.values[key]
        if value not in options:
            raise ConfigError(
                f"population {key} must be one of {', '.join(options)}, got {value!r}"
            )
        return str(value)


def _distribution(kind: str, median: float, sigma: float, alpha: float) -> Distribution:
    """The distribution a config names."""
    if kind == "lognormal":
        return LogNormal(median, sigma)
    if kind == "pareto":
        return Pareto(median, alpha)
    return Constant(median)


def _from_config(
    table: Mapping[str, object], base_dir: str | os.PathLike[str] | None
) -> PopulationModel:
    """Build a PopulationModel from a config table (see :data:`CONFIG_DEFAULTS`)."""
    t = _Table(table)
    seed = t.values["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"population seed must be an integer >= 0, got {seed!r}")
    spe = None if t.values["seconds-per-example"] is None else t.number("seconds-per-example")
    dropout = t.number("dropout")
    trace = t.values["trace"]
    if trace is None and t.values["trace-repeat-s"] is not None:
        raise ConfigError("population trace-repeat-s repeats a trace; set trace too")
    if trace is not None:
        clash = [k for k in table if k not in _COMMON_KEYS]
        if not isinstance(trace, str) or not trace:
            raise ConfigError(f"population trace must be a file path, got {trace!r}")
        if clash:
            raise ConfigError(
                f"population trace gives speed, bandwidth and availability; drop {clash[0]!r}"
            )
        path = Path(base_dir or ".") / trace
        repeat = None if t.values["trace-repeat-s"] is None else t.number("trace-repeat-s")
        return PopulationModel.from_trace(
            path, repeat_s=repeat, dropout=dropout, seconds_per_example=spe, seed=seed
        )
    t.check_applies()
    kinds = ("constant", "lognormal", "pareto")
    speed = _distribution(
        t.choice("speed", kinds),
        t.number("speed-median"),
        t.number("speed-sigma"),
        t.number("speed-alpha"),
    )
    bandwidth = _bandwidth(t)
    availability = _availability(t)
    return PopulationModel(speed, bandwidth, availability, dropout, spe, seed)


def _bandwidth(t: _Table) -> Bandwidth:
    """The bandwidth a config names: ``download-bps``/``upload-bps`` are the medians."""
    kind = t.choice("bandwidth", ("free", "constant", "lognormal", "pareto"))
    if kind == "free":
        return Bandwidth.free()
    sigma, alpha = t.number("bandwidth-sigma"), t.number("bandwidth-alpha")
    return Bandwidth(
        _distribution(kind, t.number("download-bps"), sigma, alpha),
        _distribution(kind, t.number("upload-bps"), sigma, alpha),
    )


def _availability(t: _Table) -> Availability:
    """The availability pattern a config names."""
    kind = t.choice("availability", ("always", "bernoulli", "diurnal"))
    if kind == "bernoulli":
        return Bernoulli(t.number("availability-p"), t.number("period-s"))
    if kind == "diurnal":
        return Diurnal(t.number("hours-per-day"), t.number("start-hour"), t.number("spread-hours"))
    return Always()
