"""Flower's privacy mods on pollinate's: ``fixedclipping_mod``, ``LocalDpMod``, ``secaggplus_mod``.

Each converts the Flower views it is given to the pollinate Message behind them (no copy)
and runs ``pollinate.privacy``'s mod, whose ``call_next`` hands Flower views on again; so
the clipping, noise and SecAgg+ protocol are pollinate's own. Flower's
``adaptiveclipping_mod`` has no counterpart (``CLIENT_SIDE_ADAPTIVE``).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import Any, TypeAlias

from ...client import Mod
from ...context import Context as CoreContext
from ...errors import ConfigError
from ...message import Message as CoreMessage
from ...message import MessageType
from ...privacy import SecAggPlusMod, local_dp_mod
from ...privacy import fixed_clipping_mod as core_fixed_clipping_mod
from ...records import ConfigRecord
from ._records import Context, Message, core_message, flower_context, flower_message
from .common.logger import warn_once

__all__ = [
    "MOD_NAMES",
    "LocalDpMod",
    "fixedclipping_mod",
    "refused_mod",
    "secagg_mod",
    "secaggplus_mod",
]

FlowerNext: TypeAlias = Callable[[Message, Context], Message]

_FLOWER_SECAGG_MOD = SecAggPlusMod(min_neighbours=2, min_threshold=2)
"""Flower's node takes any neighbourhood of 2 or more (its example: 3 shares, threshold 2);
pollinate's own ``secaggplus_mod`` asks for at least 4 neighbours and a threshold of 3."""

CONFIG, ROUND = "config", "server-round"
"""Where a train message's round is (pollinate's strategies and Flower's message API put it)."""

MOD_NAMES = ("LocalDpMod", "fixedclipping_mod", "secagg_mod", "secaggplus_mod")
"""The Flower mods mapped here (``flwr.client.mod`` and ``flwr.clientapp.mod`` hold them)."""


def fixedclipping_mod(msg: Message, ctxt: Context, call_next: FlowerNext) -> Message:
    """Flower's ``fixedclipping_mod``: pollinate's ``fixed_clipping_mod``.

    Clips the train reply's update to the norm the server's
    ``DifferentialPrivacyClientSideFixedClipping`` sends (as ``dp.clip-norm``).
    """
    return _run(core_fixed_clipping_mod, msg, ctxt, call_next)


def secaggplus_mod(msg: Message, ctxt: Context, call_next: FlowerNext) -> Message:
    """Flower's ``secaggplus_mod``: pollinate's, for ``SecAggPlusWorkflow``'s rounds.

    It answers the four SecAgg+ stages and calls the app's train handler once per round,
    masking the update (trained minus received model) with the weight ``num_examples``.
    Like Flower's, it takes rounds of 2 neighbours and a threshold of 2.
    """
    return _run(_FLOWER_SECAGG_MOD, msg, ctxt, call_next)


def secagg_mod(msg: Message, ctxt: Context, call_next: FlowerNext) -> Message:
    """Flower's ``secagg_mod`` (for ``SecAggWorkflow``): ``secaggplus_mod``, as in Flower."""
    return secaggplus_mod(msg, ctxt, call_next)


class LocalDpMod:
    """Flower's ``LocalDpMod(clipping_norm, sensitivity, epsilon, delta)``: ``local_dp_mod``.

        The update's delta is clipped to ``clipping_norm`` and noised on the node. The noise is
        pollinate's: the analytic Gaussian mechanism for ``(epsilon, delta)`` at sensitivity
        ``2 x clipping_norm``, the most two clipped updates differ by, so the guarantee holds
        whatever ``sensitivity`` says (Flower scales its noise by ``sensitivity`` with the
        classic bound, valid for epsilon <= 1 only); a ``sensitivity`` other than that is
        noted once. ``seed`` (pollinate's): reproducible noise, drawn by node and by the
    config's ``server-round``; None (the default) draws it from the OS.
    """

    def __init__(
        self,
        clipping_norm: float,
        sensitivity: float,
        epsilon: float,
        delta: float,
        seed: int | None = None,
    ) -> None:
        if (
            isinstance(sensitivity, bool)
            or not isinstance(sensitivity, numbers.Real)
            or not sensitivity >= 0
        ):
            raise ConfigError(
                f"LocalDpMod: sensitivity must be a number, 0 or more, got {sensitivity!r}"
            )
        try:
            self._mod: Mod = local_dp_mod(clipping_norm, epsilon, delta, seed=seed)
        except ConfigError as err:
            raise ConfigError(f"LocalDpMod: {err}") from None
        self.clipping_norm: float = clipping_norm
        self.sensitivity: float = sensitivity
        self.epsilon: float = epsilon
        self.delta: float = delta
        self.seed: int | None = seed
        if sensitivity != 2 * clipping_norm:
            warn_once(
                "local-dp-sensitivity",
                f"LocalDpMod: sensitivity={sensitivity:g} is not used: pollinate noises for "
                f"sensitivity 2 x clipping_norm = {2 * clipping_norm:g}, the most two clipped "
                "updates can differ by, so each update is (epsilon, delta)-DP as promised",
            )

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt from its arguments, so a ClientApp with it can go to worker processes."""
        args = (self.clipping_norm, self.sensitivity, self.epsilon, self.delta, self.seed)
        return (type(self), args)

    def __call__(self, msg: Message, ctxt: Context, call_next: FlowerNext) -> Message:
        """Run the train message's reply through pollinate's ``local_dp_mod``."""
        train = MessageType.split(msg.metadata.message_type)[0] == MessageType.TRAIN
        if train and self.seed is not None:
            _check_round_in(core_message(msg))
        return _run(self._mod, msg, ctxt, call_next)


def _check_round_in(message: CoreMessage) -> None:
    """A seeded draw is keyed by the round: refuse a train config that does not say it."""
    config = message.content.get(CONFIG)
    if not isinstance(config, ConfigRecord) or ROUND not in config:
        raise ConfigError(
            f"LocalDpMod(seed=...) draws its noise by round, but the train config has no "
            f"{ROUND!r} (Flower's classic strategies send none), so every round would repeat "
            f"the same noise: return {{{ROUND!r}: server_round}} from on_fit_config_fn, or "
            "leave seed=None (OS randomness)"
        )


def refused_mod(module: str, name: str) -> Exception:
    """The one error for a Flower mod of ``module`` that is not mapped."""
    from ._dp import CLIENT_SIDE_ADAPTIVE
    from ._missing import unsupported

    if name == "adaptiveclipping_mod":
        return unsupported(module, name, CLIENT_SIDE_ADAPTIVE)
    return unsupported(
        module,
        name,
        f"the mods mapped are {', '.join(MOD_NAMES)}; your own run too: "
        "ClientApp(mods=[...]) with mod(msg, context, call_next)",
    )


def _run(mod: Mod, msg: Message, ctxt: Context, call_next: FlowerNext) -> Message:
    """``mod`` on the pollinate message behind ``msg``, calling ``call_next`` with Flower views."""
    core_next = functools.partial(_flower_next, call_next)
    return flower_message(mod(core_message(msg), ctxt, core_next))


def _flower_next(call_next: FlowerNext, message: CoreMessage, context: CoreContext) -> CoreMessage:
    return core_message(call_next(flower_message(message), flower_context(context)))
