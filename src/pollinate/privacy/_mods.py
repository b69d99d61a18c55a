"""ClientApp mods: clip the node's update before it leaves, or clip and noise it (local DP).

``fixed_clipping_mod`` is central DP's client side (the server adds the noise);
``local_dp_mod`` needs no trust in the server at all, at a far higher cost in accuracy.
"""

from __future__ import annotations

import numpy as np

from ..client import Handler, Mod
from ..context import Context
from ..errors import ConfigError
from ..message import Message, MessageType
from ..records import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from ..strategy.clipping import clip_delta
from ._accountant import dp_accounting
from ._central import CLIP_NORM_KEY
from ._checks import check_delta, check_positive
from ._noise import NoiseSource, Normals
from ._secagg._errors import outside_secagg
from ._secagg._keys import CLIPPED, STAGE

__all__ = ["fixed_clipping_mod", "local_dp_mod"]

ARRAYS_KEY, METRICS_KEY, CONFIG_KEY = "arrays", "metrics", "config"

LOCAL_DP_STATE_KEY = "privacy.local-dp"
"""``context.state`` key of a node's local DP spending: rounds and ``sum z_i^-2``."""


def fixed_clipping_mod(message: Message, context: Context, call_next: Handler) -> Message:
    """Clip a train reply's delta from the model received to the server's ``dp.clip-norm``.

    For ``dp_fixed_clip(..., clipped_on="nodes")``: the node's update is clipped here, before
    it leaves, so the server may see only a secure sum. Other messages pass through. A train
    message without ``dp.clip-norm`` fails the node with the fix: the server does not expect
    clipped updates. With SecAgg+ it must run inside ``secaggplus_mod`` (listed after it),
    which it checks.
    """
    if MessageType.split(message.metadata.message_type)[0] != MessageType.TRAIN:
        return call_next(message, context)
    config = message.content.config(CONFIG_KEY)
    if STAGE in config:
        raise outside_secagg("fixed_clipping_mod")
    if CLIP_NORM_KEY not in config:
        raise ConfigError(
            f"fixed_clipping_mod: the server sent no {CLIP_NORM_KEY!r}: use "
            "dp_fixed_clip(..., clipped_on='nodes') on the server, or drop the mod"
        )
    clip = check_positive(CLIP_NORM_KEY, config[CLIP_NORM_KEY])
    received = message.content.arrays(ARRAYS_KEY)
    reply = call_next(message, context)
    if reply.has_error:
        return reply
    clipped = clip_delta(reply.content.arrays(ARRAYS_KEY), received, clip)
    context.state[CLIPPED] = ConfigRecord({CLIP_NORM_KEY: clip})  # for secaggplus_mod
    return _with_arrays(reply, clipped, {})


def local_dp_mod(clip_norm: float, epsilon: float, delta: float, *, seed: int | None = None) -> Mod:
    """Local DP on the node: clip the update's delta, add Gaussian noise, then send it.

    The delta is clipped to ``clip_norm``; any two clipped deltas differ by at most
    ``2 x clip_norm`` (the sensitivity), and the noise's std is the analytic Gaussian
    mechanism's for ``(epsilon, delta)`` at that sensitivity (Balle and Wang 2018, by
    dp-accounting), so each round's update is ``(epsilon, delta)``-DP for the node's whole
    data set, against anyone who sees it, the server included. The reply's metrics carry
    ``privacy.node-epsilon`` and ``privacy.node-delta``: the node's cumulative epsilon over
    the rounds it trained in, kept in ``context.state``; k Gaussian mechanisms of noise
    multipliers z_i compose exactly into one of multiplier ``(sum z_i^-2)^-1/2`` (Dong, Roth
    and Su 2019, "Gaussian Differential Privacy"), so k rounds spend less than k x epsilon.
    Integer arrays cannot be noised: they go back as received (a trained counter such as
    BatchNorm's ``num_batches_tracked`` would give away the data set's size). ``seed``:
    reproducible noise (tests, simulation); None draws it from the OS.
    """
    clip = check_positive("local_dp_mod: clip_norm", clip_norm)
    eps = check_positive("local_dp_mod: epsilon", epsilon)
    try:
        checked_delta = check_delta(delta)
    except ConfigError as err:
        raise ConfigError(f"local_dp_mod: {err}") from None
    return _LocalDp(clip, eps, checked_delta, NoiseSource(seed))


class _LocalDp:
    """``local_dp_mod``'s mod, a class so that a ClientApp using it can be pickled.

    The process backend sends a ClientApp object to its workers pickled; a closure cannot go.
    """

    def __init__(self, clip: float, epsilon: float, delta: float, noise: NoiseSource) -> None:
        self.clip, self.epsilon, self.delta, self.noise = clip, epsilon, delta, noise
        self.z = _gaussian_multiplier(epsilon, delta)
        self.std = self.z * 2 * clip

    def __repr__(self) -> str:
        return (
            f"local_dp_mod(clip_norm={self.clip:g}, epsilon={self.epsilon:g}, "
            f"delta={self.delta:g}, seed={self.noise.seed})"
        )

    def __call__(self, message: Message, context: Context, call_next: Handler) -> Message:
        """Clip and noise a train reply's update; pass other messages through."""
        if MessageType.split(message.metadata.message_type)[0] != MessageType.TRAIN:
            return call_next(message, context)
        if STAGE in message.content.config(CONFIG_KEY):
            raise outside_secagg("local_dp_mod")
        received = message.content.arrays(ARRAYS_KEY)
        reply = call_next(message, context)
        if reply.has_error:
            return reply
        clipped = clip_delta(reply.content.arrays(ARRAYS_KEY), received, self.clip)
        server_round = message.content.config(CONFIG_KEY).get("server-round", 0)
        draw = self.noise.normals(context.node_id, int(server_round))
        noised = ArrayRecord(
            (
                name,
                _noised(a, self.std, draw)
                if a.dtype.kind in "fc"
                else _as_received(name, received),
            )
            for name, a in clipped.items()
        )
        figures = {"privacy.node-epsilon": self._spend(context), "privacy.node-delta": self.delta}
        return _with_arrays(reply, noised, figures)

    def _spend(self, context: Context) -> float:
        """Add this round to the node's account in ``context.state``; its epsilon so far."""
        kept = context.state.get(LOCAL_DP_STATE_KEY)
        rounds, precision = 0, 0.0
        if isinstance(kept, MetricRecord):
            rounds, precision = int(kept["rounds"]), float(kept["precision"])  # type: ignore[arg-type]
        rounds, precision = rounds + 1, precision + self.z**-2
        context.state[LOCAL_DP_STATE_KEY] = MetricRecord({"rounds": rounds, "precision": precision})
        if rounds == 1:
            return self.epsilon
        return float(dp_accounting().get_epsilon_gaussian(precision**-0.5, self.delta))


def _gaussian_multiplier(epsilon: float, delta: float) -> float:
    """The analytic Gaussian mechanism's noise multiplier for ``(epsilon, delta)``."""
    return float(dp_accounting().get_sigma_gaussian(epsilon, delta))


def _as_received(name: str, received: ArrayRecord) -> Array:
    """The non-float array ``name`` as the node received it (it would leave unnoised)."""
    if name not in received:
        raise ConfigError(
            f"local_dp_mod: the reply's array {name!r} is not in the model the node received, "
            "and it is not floating-point, so it cannot be noised: send only the model's arrays"
        )
    return received[name]


def _noised(array: Array, std: float, draw: Normals) -> Array:
    """``array`` plus Gaussian noise of ``std`` if it is floating-point (complex: refused)."""
    if array.dtype.kind == "c":
        raise ConfigError(
            "local_dp_mod noises real floating-point arrays; send a complex array's real and "
            "imaginary parts as two arrays"
        )
    if array.dtype.kind != "f":
        return array
    data = np.asarray(array.numpy(), np.float64)
    noise = draw(data.size).reshape(data.shape)
    return Array((data + std * noise).astype(array.dtype))


def _with_arrays(reply: Message, arrays: ArrayRecord, metrics: dict[str, float]) -> Message:
    """``reply`` with its model replaced and ``metrics`` added to its metrics."""
    content = RecordDict(reply.content)
    content[ARRAYS_KEY] = arrays
    if metrics:
        record = content.metrics(METRICS_KEY) if METRICS_KEY in content else None
        merged = dict(record or {})
        merged.update(metrics)
        content[METRICS_KEY] = MetricRecord(merged)
    return Message(reply.metadata, content, reply.error)
