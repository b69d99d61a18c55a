"""Central differential privacy as aggregators for ``chain(...)``: clip, sum, add noise.

Each round the server (or, with ``clipped_on="nodes"``, each node) clips every update's
delta from the current model to L2 norm ``C``; the server sums the clipped deltas without
the nodes' weights, adds Gaussian noise of standard deviation ``z x C`` and divides by the
EXPECTED number of nodes, ``q x available`` (``q``: the Poisson sampling rate). Dividing by
the expected count, not the count that came, keeps the count out of the released model, as
the accountant assumes (McMahan et al. 2018, "Learning Differentially Private Recurrent
Language Models", https://arxiv.org/abs/1710.06963). Adaptive clipping moves ``C`` toward a
quantile of the update norms, itself privatized (Andrew et al. 2021, "Differentially
Private Learning with Adaptive Clipping", https://arxiv.org/abs/1905.03871).
"""

from __future__ import annotations

import math
import numbers
from abc import abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, RoundError
from ..message import SERVER_NODE_ID
from ..records import Array, ArrayRecord, ConfigValue, MetricRecord
from ..strategy import Aggregator, RoundInfo, Update
from ..strategy._secure import COUNT_KEY
from ..strategy.clipping import delta_norm, half_delta, half_delta_norm
from . import _accountant
from ._accountant import Accountant
from ._checks import check_delta, check_positive, check_rate, check_rounds, is_number
from ._noise import COUNT_NOISE, SAMPLING, UPDATE_NOISE, NoiseSource

__all__ = ["CLIP_NORM_KEY", "SECAGG_COUNT_KEY", "dp_adaptive_clip", "dp_fixed_clip"]

CLIP_NORM_KEY = "dp.clip-norm"
"""The train config key that tells nodes the L2 norm to clip their update's delta to."""

SECAGG_COUNT_KEY = COUNT_KEY
"""A securely aggregated reply's metric: how many node-clipped deltas its model is the mean of."""

HISTORY = "privacy.history"
"""The accountant's state: a row ``[q, z, clip]`` per round, and per interrupted round."""

ACCOUNTING = "privacy.accounting"
"""What the history's epsilon is for: ``[delta, index of the accountant in ACCOUNTANTS]``."""

ATTEMPTS = "privacy.resumes"
"""How many times the run was resumed: part of every seeded key, so noise never repeats."""

CLIP = "privacy.next-clip-norm"
"""Adaptive clipping's state: the clip the next round uses."""

FLOAT64_SLACK = 1e-9
"""How far past the clip (relatively) float64 arithmetic may put a node-clipped update."""


def dp_fixed_clip(
    clip_norm: float,
    noise_multiplier: float | None = None,
    *,
    target_epsilon: float | None = None,
    num_rounds: int | None = None,
    delta: float = 1e-5,
    max_epsilon: float | None = None,
    clipped_on: Literal["server", "nodes"] = "server",
    accountant: Accountant = "pld",
    seed: int | None = None,
) -> Aggregator:
    """Central DP with a fixed clip: each delta clipped to ``clip_norm``, summed, noised.

    The model moves by ``(sum of clipped deltas + N(0, (z x clip_norm)^2)) / (q x available)``;
    give either ``noise_multiplier`` (``z``) or ``target_epsilon`` with ``num_rounds`` (the
    run's planned rounds: ``z`` is then calibrated for them). ``delta``: the run's delta,
    below 1 / number of nodes. ``max_epsilon`` ends the run cleanly before a round that
    would pass it (default with ``target_epsilon``: the target). ``clipped_on="nodes"``:
    the nodes clip (``fixed_clipping_mod``, told the clip by ``dp.clip-norm``) so the sum
    may come securely aggregated; the server still adds the noise, and sets aside a visible
    update longer than the clip. ``seed``: reproducible noise and sampling; None (the
    default) draws both from the OS, as a deployed run must. docs/privacy.md.
    """
    clip = check_positive("dp_fixed_clip: clip_norm", clip_norm)
    if clipped_on not in ("server", "nodes"):
        raise ConfigError(
            f"dp_fixed_clip: clipped_on must be 'server' or 'nodes', got {clipped_on!r}"
        )
    plan = _plan(
        "dp_fixed_clip",
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        num_rounds=num_rounds,
        delta=delta,
        max_epsilon=max_epsilon,
        accountant=accountant,
        seed=seed,
    )
    return _FixedClip(clip, clipped_on == "nodes", plan)


def dp_adaptive_clip(
    noise_multiplier: float | None = None,
    *,
    target_epsilon: float | None = None,
    num_rounds: int | None = None,
    delta: float = 1e-5,
    max_epsilon: float | None = None,
    initial_clip_norm: float = 0.1,
    target_quantile: float = 0.5,
    clip_learning_rate: float = 0.2,
    count_noise_std: float | None = None,
    accountant: Accountant = "pld",
    seed: int | None = None,
) -> Aggregator:
    """Central DP whose clip tracks a quantile of the update norms (Andrew et al. 2021).

    Each round, with ``b`` the share of updates no longer than the clip ``C``, privatized as
    ``b~ = (sum(b_i - 1/2) + N(0, s^2)) / expected + 1/2``, the next clip is
    ``C x exp(-clip_learning_rate x (b~ - target_quantile))``. ``s`` is
    ``count_noise_std`` (default ``expected / 20``, the paper's). The update's noise
    multiplier is ``z_update = (z^-2 - (2 s)^-2)^(-1/2)``, so the two Gaussian releases
    together are worth exactly the ``z`` asked for (or calibrated from ``target_epsilon``),
    which is what the accountant is told; it needs ``2 s > z`` (checked here when both are
    given, else before a round sends to any node). The rest as ``dp_fixed_clip``;
    the server clips (adaptive clipping on the nodes is not offered).
    """
    initial = check_positive("dp_adaptive_clip: initial_clip_norm", initial_clip_norm)
    rate = check_positive("dp_adaptive_clip: clip_learning_rate", clip_learning_rate)
    if not is_number(target_quantile) or not 0 < float(target_quantile) < 1:
        raise ConfigError(
            f"dp_adaptive_clip: target_quantile must be between 0 and 1, got {target_quantile!r}"
        )
    count_std = None
    if count_noise_std is not None:
        count_std = check_positive("dp_adaptive_clip: count_noise_std", count_noise_std)
    plan = _plan(
        "dp_adaptive_clip",
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        num_rounds=num_rounds,
        delta=delta,
        max_epsilon=max_epsilon,
        accountant=accountant,
        seed=seed,
    )
    piece = _AdaptiveClip(initial, float(target_quantile), rate, count_std, plan)
    if count_std is not None and plan.noise_multiplier is not None:
        problem = piece.count_noise_problem(plan.noise_multiplier, count_std, expected=None)
        if problem is not None:
            raise ConfigError(f"dp_adaptive_clip: {problem}")
    return piece


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the accountant needs beyond a round: z or a target, delta, a budget, a source."""

    noise_multiplier: float | None
    target_epsilon: float | None
    num_rounds: int | None
    delta: float
    max_epsilon: float | None
    accountant: Accountant
    noise: NoiseSource

    def z(self, q: float) -> float:
        """The noise multiplier: the one given, or the one calibrated for the rate ``q``."""
        if self.noise_multiplier is not None:
            return self.noise_multiplier
        assert self.target_epsilon is not None and self.num_rounds is not None  # by _checked_plan
        return _accountant.calibrate_noise_multiplier(
            self.target_epsilon, self.delta, q, self.num_rounds, self.accountant
        )

    def epsilon(self, history: np.ndarray[Any, Any]) -> float:
        """The epsilon at the run's delta of the rounds in ``history``."""
        rounds = _accountant.history_rounds(history)
        return _accountant.epsilon(rounds, self.delta, self.accountant)

    def check_reachable(self, q: float) -> None:
        """ConfigError if ``target_epsilon`` cannot be reached at rate ``q`` (None: fine)."""
        if self.target_epsilon is not None and self.num_rounds is not None:
            _accountant.check_reachable(
                self.target_epsilon, self.delta, q, self.num_rounds, self.accountant
            )

    def args(self) -> str:
        """The plan as the arguments it was given, for a piece's repr."""
        parts = (
            [f"noise_multiplier={self.noise_multiplier}"]
            if self.noise_multiplier is not None
            else [f"target_epsilon={self.target_epsilon}", f"num_rounds={self.num_rounds}"]
        )
        parts.append(f"delta={self.delta}")
        if self.max_epsilon is not None and self.max_epsilon != self.target_epsilon:
            parts.append(f"max_epsilon={self.max_epsilon}")
        if self.accountant != "pld":
            parts.append(f"accountant={self.accountant!r}")
        if self.noise.seed is not None:
            parts.append(f"seed={self.noise.seed}")
        return ", ".join(parts)


def _plan(piece: str, **args: Any) -> _Plan:
    """The checked plan of a piece's arguments (one ConfigError naming ``piece`` if not)."""
    try:
        return _checked_plan(**args)
    except ConfigError as err:
        raise ConfigError(f"{piece}: {err}") from None


def _checked_plan(
    noise_multiplier: float | None,
    target_epsilon: float | None,
    num_rounds: int | None,
    delta: float,
    max_epsilon: float | None,
    accountant: str,
    seed: int | None,
) -> _Plan:
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ConfigError(
            "give either noise_multiplier or target_epsilon (with num_rounds), not both "
            "and not neither"
        )
    z: float | None = None
    target: float | None = None
    if noise_multiplier is not None:
        z = check_positive("noise_multiplier", noise_multiplier)
    else:
        target = check_positive("target_epsilon", target_epsilon)
        if num_rounds is None:
            raise ConfigError(
                "target_epsilon needs num_rounds, the rounds the run will have (a whole "
                "number, 1 or more), to calibrate the noise for"
            )
        num_rounds = check_rounds("num_rounds", num_rounds)
    budget = target  # a target is a budget too, unless another is given
    if max_epsilon is not None:
        budget = check_positive("max_epsilon", max_epsilon)
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0
    ):
        raise ConfigError(
            f"seed must be a whole number 0 or more, or None (OS randomness), got {seed!r}"
        )
    return _Plan(
        z,
        target,
        num_rounds,
        check_delta(delta),
        budget,
        _accountant.check_accountant(accountant),
        NoiseSource(None if seed is None else int(seed)),
    )


class _CentralDp(Aggregator):
    """Clip (or check), sum unweighted, add noise, divide by the expected count; account."""

    streaming = True
    poisson_sampling = True
    after_whole_round_filters = False
    unweighted = True
    """The SecAgg+ workflow must sum with weight 1: DP's sum ignores the nodes' weights."""
    works_on_sum = False
    """Whether a securely aggregated sum will do (only when the nodes clip)."""

    def __init__(self, plan: _Plan, nodes_clip: bool) -> None:
        self.plan = plan
        self.nodes_clip = nodes_clip

    def aggregate(self, updates: Iterable[Update], current: ArrayRecord) -> ArrayRecord | None:
        """Refused: DP needs its round (the sample it came from) and its state."""
        raise ConfigError(
            f"{self!r} adds noise for a round of a strategy: use it in "
            "FedAvg(aggregation=chain(...)), which tells it the round's sample"
        )

    growing_state = (HISTORY,)

    def init(self, arrays: ArrayRecord) -> ArrayRecord:
        """An empty accountant history, what it accounts for, and no resume yet."""
        accounting = [self.plan.delta, _accountant.ACCOUNTANTS.index(self.plan.accountant)]
        return ArrayRecord(
            {HISTORY: np.zeros((0, 3)), ACCOUNTING: np.array(accounting), ATTEMPTS: np.array(0)}
        )

    def resume(self, state: ArrayRecord, last_round: int, sampling_rate: float) -> ArrayRecord:
        """The kept state with the interrupted round accounted as spent; refused if unsound.

        The round after ``last_round`` may have released its noised model (to the
        evaluating nodes) before the server fell, and the resumed run redoes it: it is
        accounted as one more round, and the resume count keys the seeded noise anew.
        """
        history = state[HISTORY].numpy()
        if len(history) < last_round:
            raise ConfigError(
                f"{self!r}: the run resumes after round {last_round}, but its DP history "
                f"accounts {len(history)} of the {last_round} rounds (plain rounds, or a "
                "resume point without the strategy's state): their privacy cost is unknown, "
                "so epsilon cannot go on; start a new run, or resume from a checkpoint with "
                "the strategy state"
            )
        delta, kind = (float(v) for v in state[ACCOUNTING].numpy())
        was = _accountant.ACCOUNTANTS[int(kind)]
        if (delta, was) != (self.plan.delta, self.plan.accountant):
            raise ConfigError(
                f"{self!r}: the run to resume was accounted at delta={delta:g} with "
                f"accountant={was!r}: resume with the same delta and accountant"
            )
        interrupted = [self._interrupted_round(history, sampling_rate, state)]
        resumed = ArrayRecord(state)
        resumed[HISTORY] = np.concatenate([history, interrupted])
        resumed[ATTEMPTS] = np.array(_attempt(state) + 1)
        return resumed

    def check_sampling(self, sampling_rate: float) -> None:
        """Refuse a rate out of (0, 1], or a target epsilon no noise can reach at it."""
        try:
            self.plan.check_reachable(check_rate("fraction_train", sampling_rate))
        except ConfigError as err:
            raise ConfigError(f"{self!r}: {err}") from None

    def _interrupted_round(
        self, history: np.ndarray[Any, Any], sampling_rate: float, state: ArrayRecord
    ) -> list[float]:
        """The row for a round that may have run: the costlier of the last round and the next.

        The interrupted attempt ran with the settings of the run that fell, which may differ
        from the resumed one's: the larger rate and the smaller noise multiplier bound both.
        """
        q, z = sampling_rate, self.plan.z(sampling_rate)
        if len(history):
            q, z = max(q, float(history[-1][0])), min(z, float(history[-1][1]))
        return [q, z, self.clip(state)]

    def check_round(self, info: RoundInfo) -> None:
        """Refuse, before any node trains, a delta of 1 / population or more.

        A mechanism that publishes one node's data outright meets delta = 1 / n, so such a
        delta bounds nothing; the population is first known here.
        """
        n, delta = info.num_available, self.plan.delta
        if delta * n >= 1:
            advice = 10 ** math.floor(math.log10(0.1 / n))
            raise ConfigError(
                f"{self!r}: delta={delta:g} is at least 1 / {n} available nodes, so it "
                "allows one node's data to be published whole: give a delta well below "
                f"1 / {n}, e.g. delta={advice:g}"
            )

    def sampling_rng(self, server_round: int, state: ArrayRecord) -> np.random.Generator:
        """The Poisson sample's randomness: seeded (anew after a resume), or from the OS."""
        return self.plan.noise.generator(server_round, SAMPLING, *_resumes(state))

    @abstractmethod
    def clip(self, state: ArrayRecord) -> float:
        """The clip this round uses."""

    def aggregate_round(
        self,
        updates: Iterable[Update],
        current: ArrayRecord,
        state: ArrayRecord,
        info: RoundInfo | None,
    ) -> tuple[ArrayRecord | None, ArrayRecord]:
        """The noised mean delta applied to ``current``, and the state with the round added."""
        if info is None:
            raise ConfigError(
                f"{self!r} was not told its round's sample: use it in "
                "FedAvg(aggregation=chain(...))"
            )
        _check_real(current)
        clip, q = self.clip(state), info.sampling_rate
        expected = q * info.num_available
        if not expected > 0:
            raise RoundError(
                f"round {info.server_round}: no node could be sampled (sampling rate {q:g} of "
                f"{info.num_available} nodes): raise fraction_train"
            )
        z = self.plan.z(q)
        total = _ClippedSum(current, clip, secure_means=self.nodes_clip)
        for update in updates:
            total.add(update)
        noise_std, new_state = self.after_round(total, clip, z, expected, state, info)
        draw = self.plan.noise.normals(info.server_round, UPDATE_NOISE, *_resumes(state))
        model = total.noised_mean(expected, noise_std, draw)
        history = np.concatenate([state[HISTORY].numpy(), [[q, z, clip]]])
        new_state[HISTORY] = history
        new_state[ACCOUNTING] = state[ACCOUNTING]
        new_state[ATTEMPTS] = state[ATTEMPTS]
        return model, new_state

    def after_round(
        self,
        total: _ClippedSum,
        clip: float,
        z: float,
        expected: float,
        state: ArrayRecord,
        info: RoundInfo,
    ) -> tuple[float, ArrayRecord]:
        """The std of the noise on the sum, and the state (without the history) after the round."""
        return z * clip, ArrayRecord()

    def metrics(self, state: ArrayRecord) -> MetricRecord:
        """``privacy.*`` of the round just accounted (nothing before the first)."""
        history = state[HISTORY].numpy()
        if len(history) == 0:
            return MetricRecord()
        q, z, clip = (float(v) for v in history[-1])
        return MetricRecord(
            {
                "privacy.epsilon": self.plan.epsilon(history),
                "privacy.delta": self.plan.delta,
                "privacy.noise-multiplier": z,
                "privacy.clip-norm": clip,
                "privacy.sampling-rate": q,
            }
        )

    def stop_reason(
        self, server_round: int, state: ArrayRecord, sampling_rate: float
    ) -> str | None:
        """The budget's verdict: the epsilon after one more round at ``sampling_rate``."""
        budget = self.plan.max_epsilon
        if budget is None:
            return None
        history = state[HISTORY].numpy()
        planned = np.concatenate([history, [[sampling_rate, self.plan.z(sampling_rate), 0.0]]])
        after = self.plan.epsilon(planned)
        if after <= budget:
            return None
        spent = self.plan.epsilon(history)
        given = "target_epsilon" if budget == self.plan.target_epsilon else "max_epsilon"
        return (
            f"the privacy budget {given}={budget:g} (delta={self.plan.delta:g}) would be "
            f"passed: epsilon is {spent:.4g} after {len(history)} accounted rounds and would be "
            f"{after:.4g} after round {server_round}"
        )


class _FixedClip(_CentralDp):
    def __init__(self, clip: float, nodes_clip: bool, plan: _Plan) -> None:
        super().__init__(plan, nodes_clip)
        self.clip_norm = clip
        self.works_on_sum = nodes_clip

    def clip(self, state: ArrayRecord) -> float:
        """The fixed clip."""
        return self.clip_norm

    def node_config(self, state: ArrayRecord) -> dict[str, ConfigValue]:
        """``dp.clip-norm`` for the nodes to clip to, when they clip."""
        return {CLIP_NORM_KEY: self.clip_norm} if self.nodes_clip else {}

    def check_update(
        self, arrays: ArrayRecord, metrics: MetricRecord, current: ArrayRecord
    ) -> str | None:
        """With the nodes clipping: set aside an update (or secure mean) longer than the clip."""
        if not self.nodes_clip:
            return None
        norm = beyond_clip(arrays, current, self.clip_norm)
        if norm is None:
            return None
        return (
            f"its update is {norm:.4g} from the global model but the nodes must clip to "
            f"dp.clip-norm={self.clip_norm:g}: add fixed_clipping_mod to the ClientApp's mods"
        )

    def __repr__(self) -> str:
        on = ", clipped_on='nodes'" if self.nodes_clip else ""
        return f"dp_fixed_clip(clip_norm={self.clip_norm}, {self.plan.args()}{on})"


class _AdaptiveClip(_CentralDp):
    def __init__(
        self,
        initial: float,
        quantile: float,
        rate: float,
        count_noise_std: float | None,
        plan: _Plan,
    ) -> None:
        super().__init__(plan, nodes_clip=False)
        self.initial_clip_norm = initial
        self.target_quantile = quantile
        self.clip_learning_rate = rate
        self.count_noise_std = count_noise_std

    def init(self, arrays: ArrayRecord) -> ArrayRecord:
        """The accountant's history, and the initial clip."""
        state = super().init(arrays)
        state[CLIP] = np.array(self.initial_clip_norm)
        return state

    def clip(self, state: ArrayRecord) -> float:
        """The clip the previous round chose."""
        return float(state[CLIP].numpy())

    def after_round(
        self,
        total: _ClippedSum,
        clip: float,
        z: float,
        expected: float,
        state: ArrayRecord,
        info: RoundInfo,
    ) -> tuple[float, ArrayRecord]:
        """The update's share of the noise, and the next clip from the noised unclipped share."""
        count_std = self._count_std(expected)
        problem = self.count_noise_problem(z, count_std, expected)
        if problem is not None:  # checked before sending; the rate cannot change since
            raise RoundError(f"round {info.server_round}: {self!r} {problem}")
        z_update = (z**-2 - (2 * count_std) ** -2) ** -0.5
        draw = self.plan.noise.normals(info.server_round, COUNT_NOISE, *_resumes(state))
        centred = total.unclipped - total.count / 2 + count_std * float(draw(1)[0])
        share = centred / expected + 0.5
        next_clip = clip * math.exp(-self.clip_learning_rate * (share - self.target_quantile))
        return z_update * clip, ArrayRecord({CLIP: np.array(next_clip)})

    def check_round(self, info: RoundInfo) -> None:
        """Refuse, before any node trains, a round whose count noise leaves none for the update."""
        super().check_round(info)
        q = info.sampling_rate
        expected = q * info.num_available
        problem = self.count_noise_problem(self.plan.z(q), self._count_std(expected), expected)
        if problem is not None:
            raise RoundError(f"round {info.server_round}: {self!r} {problem}")

    def _count_std(self, expected: float) -> float:
        """The count noise's std: the one given, or the paper's ``expected / 20``."""
        return self.count_noise_std if self.count_noise_std is not None else expected / 20

    def count_noise_problem(self, z: float, count_std: float, expected: float | None) -> str | None:
        """Why count noise ``count_std`` leaves no noise for the update at ``z`` (None: it does)."""
        if 2 * count_std > z:
            return None
        if self.count_noise_std is not None:
            return (
                f"needs count noise std > z / 2 = {z / 2:g} to leave noise for the update, but "
                f"count_noise_std={count_std:g}: raise count_noise_std"
            )
        return (
            f"needs count noise std > z / 2 = {z / 2:g} to leave noise for the update, but it "
            f"is {count_std:g} (expected nodes {expected:g} / 20): give count_noise_std, or "
            "sample more nodes a round"
        )

    def __repr__(self) -> str:
        count = "" if self.count_noise_std is None else f", count_noise_std={self.count_noise_std}"
        return (
            f"dp_adaptive_clip({self.plan.args()}, initial_clip_norm={self.initial_clip_norm}, "
            f"target_quantile={self.target_quantile}, clip_learning_rate="
            f"{self.clip_learning_rate}{count})"
        )


class _ClippedSum:
    """The unweighted float64 sum of clipped deltas from ``current``, folded one at a time."""

    def __init__(self, current: ArrayRecord, clip: float, secure_means: bool) -> None:
        self.current = current
        self.clip = clip
        self.secure_means = secure_means
        self.sums = {name: np.zeros(a.numpy().size) for name, a in _floats(current)}
        self.count = 0
        """How many nodes are in the sum (a secure sum counts as its ``secagg.count``)."""
        self.unclipped = 0
        """How many updates were no longer than the clip."""

    def add(self, update: Update) -> None:
        """Fold ``update``: clipped if it is one node's, ``n`` times its delta if a secure mean.

        A secure mean (``secagg.count = n`` in its metrics) is taken as such only when the
        nodes clip and it comes from the protocol (the server itself, not a node);
        otherwise every update is clipped here as one node's, whatever it claims.
        """
        secure = self.secure_means and update.node_id == SERVER_NODE_ID
        count = update.metrics.get(SECAGG_COUNT_KEY) if secure else None
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            self._fold(update.arrays, 2.0 * count)
            self.count += count
            return
        peak, sum_sq = half_delta_norm(update.arrays, self.current)
        within = peak * math.sqrt(sum_sq) <= self.clip / 2  # ||delta|| = 2 x peak x sqrt(sum_sq)
        self._fold(update.arrays, 2.0 if within else self.clip / (peak * math.sqrt(sum_sq)))
        self.count += 1
        self.unclipped += int(within)

    def _fold(self, arrays: ArrayRecord, scale: float) -> None:
        """Add ``scale x (arrays - current) / 2`` to each float layer's running sum."""
        for name, like in _floats(self.current):
            self.sums[name] += half_delta(arrays[name], like) * scale

    def noised_mean(self, expected: float, noise_std: float, draw: Any) -> ArrayRecord:
        """``current + (sum + noise) / expected`` in each array's dtype; other arrays unchanged."""
        out = ArrayRecord()
        for name, like in self.current.items():
            if name not in self.sums:
                out[name] = like
                continue
            noised = self.sums[name] + noise_std * draw(self.sums[name].size)
            moved = np.asarray(like.numpy(), np.float64).reshape(-1) + noised / expected
            out[name] = Array(moved.reshape(like.shape).astype(like.dtype))
        return out


def _attempt(state: ArrayRecord) -> int:
    """How many times the run was resumed."""
    return int(state[ATTEMPTS].numpy())


def _resumes(state: ArrayRecord) -> tuple[int, ...]:
    """The resume count as a seeded key's last part (none before a resume: as before)."""
    attempt = _attempt(state)
    return (attempt,) if attempt else ()


def _floats(arrays: ArrayRecord) -> Iterator[tuple[str, Array]]:
    return ((name, a) for name, a in arrays.items() if a.dtype.kind == "f")


def _check_real(current: ArrayRecord) -> None:
    complex_layers = [name for name, a in current.items() if a.dtype.kind == "c"]
    if complex_layers:
        raise ConfigError(
            f"DP pieces clip and noise real floating-point arrays; {complex_layers[0]!r} is "
            "complex: send its real and imaginary parts as two arrays"
        )


def beyond_clip(arrays: ArrayRecord, current: ArrayRecord, clip_norm: float) -> float | None:
    """The norm of ``arrays - current`` if it exceeds ``clip_norm`` by more than rounding.

    None for an update a node clipped honestly, whatever its dtype rounded: the server and
    ``secaggplus_mod`` both tell an unclipped update this way.
    """
    norm = delta_norm(arrays, current)
    if norm <= clip_norm * (1 + FLOAT64_SLACK) + _rounding(arrays):
        return None
    return norm


def _rounding(arrays: ArrayRecord) -> float:
    """The most that rounding a clipped model to its dtype can add to its delta's norm.

    Rounding moves each value ``x`` by at most ``eps / 2 x |x|`` (plus half the smallest
    subnormal), so the delta's norm by at most the norm of those bounds: a node that
    clipped honestly in float16 or float32 is never set aside. The server clips what it
    can see exactly either way; this only tells an unclipped node from a rounded one.
    """
    total = 0.0
    for _, a in _floats(arrays):
        info = np.finfo(a.dtype)
        values = np.abs(np.asarray(a.numpy(), np.float64).reshape(-1))
        bounds = values * (float(info.eps) / 2) + float(info.smallest_subnormal) / 2
        total += float(np.einsum("i,i->", bounds, bounds))
    return math.sqrt(total)
