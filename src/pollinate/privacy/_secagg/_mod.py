"""``secaggplus_mod``: the ClientApp mod that answers every SecAgg+ stage on a node.

Stage messages are ``train`` messages whose config carries ``secagg.stage``; any other
message passes straight to the app. Only the masking stage calls the app's train handler,
with the ``secagg.*`` keys taken out, so the app sees an ordinary train message. The mod
keeps the round's secrets in ``context.state`` and refuses a message that is not the next
stage of the round it is in (a replay, or one from another round) or that fails
authentication.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

import numpy as np

from ...client import Handler
from ...context import Context
from ...errors import ConfigError
from ...message import ErrorCode, Message, MessageType
from ...records import ArrayRecord, ConfigRecord, RecordDict
from .._central import CLIP_NORM_KEY, NODE_CLIP_SLACK, update_norm
from . import _keys as k
from . import _node
from ._errors import ModOrderError, SecAggError
from ._fields import byte_list, int_list, scalar
from ._masking import apply_masks, pair_seed, reduce_mod
from ._quantize import flat_delta, quantize, vector_dtype

__all__ = ["SecAggPlusMod", "secaggplus_mod"]

_ARRAYS, _CONFIG, _METRICS = "arrays", "config", "metrics"
_SEEN = "seen-sessions"
_SEEN_KEPT = 100
"""Sessions a node remembers, to refuse a replayed setup (16 bytes each)."""
_KEPT = frozenset({k.ROUND, k.SESSION, k.STAGE, _SEEN})
"""What a node keeps of a round once it is over: where it is (to refuse replays)."""


class SecAggPlusMod:
    """The mod that answers SecAgg+ stage messages (anything else passes to the app).

    ``secaggplus_mod`` is one with the default floors; a node's operator who wants larger
    ones builds their own: ``ClientApp(mods=[SecAggPlusMod(min_neighbours=16,
    min_threshold=9)])``. The node refuses a round whose server gives it fewer neighbours or
    a lower reconstruction threshold: fewer colluding neighbours would then see its secrets.
    """

    def __init__(self, *, min_neighbours: int = 4, min_threshold: int = 3) -> None:
        for name, value in (("min_neighbours", min_neighbours), ("min_threshold", min_threshold)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ConfigError(f"{name} must be an int of at least 2, got {value!r}")
        self.min_neighbours, self.min_threshold = min_neighbours, min_threshold

    def __repr__(self) -> str:
        return (
            f"SecAggPlusMod(min_neighbours={self.min_neighbours}, "
            f"min_threshold={self.min_threshold})"
        )

    def __call__(self, message: Message, context: Context, call_next: Handler) -> Message:
        """Answer a SecAgg+ stage message (pass anything else to the app unchanged)."""
        config = message.content.get(_CONFIG)
        if (
            MessageType.split(message.metadata.message_type)[0] != MessageType.TRAIN
            or not isinstance(config, ConfigRecord)
            or k.STAGE not in config
        ):
            _forget(context)  # any secure round this node was in is over
            return call_next(message, context)
        try:
            answer = self._answer(message, config, context, call_next)
        except SecAggError as err:  # the server tells the mod's refusals by their code
            _forget(context)
            return message.reply_error(ErrorCode.PROTOCOL_REFUSED, f"{type(err).__name__}: {err}")
        except BaseException:
            _forget(context)
            raise
        return message.reply(answer)

    def _answer(
        self, message: Message, config: ConfigRecord, context: Context, call_next: Handler
    ) -> RecordDict:
        stage = scalar(config, k.STAGE, str)
        state = _state_for(stage, config, context)
        node_id = context.node_id
        if stage == "setup":
            floors = (self.min_neighbours, self.min_threshold)
            answer = RecordDict({k.RECORD: _node.setup(config, node_id, state, floors)})
        elif stage == "share-keys":
            answer = RecordDict({k.RECORD: _node.share_keys(config, node_id, state)})
        elif stage == "masking":
            answer = RecordDict({k.RECORD: _masked(message, context, call_next, state)})
        else:
            answer = RecordDict({k.RECORD: _node.unmask(config, node_id, state)})
            _forget_secrets(state)
        state[k.STAGE] = stage
        context.state[k.STATE] = state
        return answer


secaggplus_mod = SecAggPlusMod()
"""The SecAgg+ node mod with the default floors: ``ClientApp(mods=[secaggplus_mod])``."""


def _state_for(stage: str, config: ConfigRecord, context: Context) -> ConfigRecord:
    """The node's state for this message; SecAggError unless it is the round's next stage."""
    if stage not in k.STAGES:
        raise SecAggError(f"secagg: unknown stage {stage!r}")
    server_round, session = scalar(config, k.ROUND, int), scalar(config, k.SESSION, bytes)
    held = context.state.get(k.STATE)
    state = ConfigRecord(held) if isinstance(held, ConfigRecord) else None
    if stage == "setup":
        seen = byte_list(state, _SEEN) if state is not None else []
        if session in seen:
            raise SecAggError(
                f"secagg: refused a setup for round {server_round}: its session was used "
                "before (a replayed message)"
            )
        return ConfigRecord(
            {k.ROUND: server_round, k.SESSION: session, _SEEN: [*seen[-_SEEN_KEPT + 1 :], session]}
        )
    expected = k.STAGES[k.STAGES.index(stage) - 1]
    if (
        state is None
        or scalar(state, k.ROUND, int) != server_round
        or scalar(state, k.SESSION, bytes) != session
        or scalar(state, k.STAGE, str) != expected
    ):
        where = "no round" if state is None else _where(state)
        raise SecAggError(
            f"secagg: refused stage {stage!r} of round {server_round}: this node is at "
            f"{where} (a replayed, out-of-order or other session's message)"
        )
    return state


def _where(state: ConfigRecord) -> str:
    return f"round {scalar(state, k.ROUND, int)} after stage {scalar(state, k.STAGE, str)!r}"


def _masked(
    message: Message, context: Context, call_next: Handler, state: ConfigRecord
) -> ArrayRecord:
    """Open the shares, train, and answer the masked, quantized, weighted model delta."""
    node_id = context.node_id
    config = message.content.config(_CONFIG)
    sources = _node.open_shares(config, node_id, state)
    received = message.content.get(_ARRAYS)
    if not isinstance(received, ArrayRecord):
        raise SecAggError("secagg: the masking stage carries no model under 'arrays'")
    context.state[k.STATE] = _without_secrets(state)  # the app trains without them in reach
    reply = call_next(_without_secagg(message), context)
    if reply.has_error:
        raise SecAggError(f"secagg: the app's train handler failed: {reply.error}")
    trained = reply.content.get(_ARRAYS)
    if not isinstance(trained, ArrayRecord) or _layout(trained) != _layout(received):
        raise SecAggError(
            "secagg: the train handler must return the model it was given, trained (the "
            "same array names and shapes under 'arrays')"
        )
    _check_clipped(config, trained, received)
    weight = _weight_factor(reply, state)
    modulus = 2 ** scalar(state, k.MODULUS_BITS, int)
    dtype = vector_dtype(modulus)
    clip, levels = scalar(state, k.CLIPPING, float), scalar(state, k.QUANTIZATION, int)
    rng = np.random.default_rng(secrets.randbits(128))
    delta = flat_delta(trained, received)
    if not np.isfinite(delta).all():
        raise SecAggError(
            "secagg: the trained model has NaN or infinite values (training diverged): "
            "refused, they would corrupt the secure sum silently; lower the learning rate "
            "or clip gradients"
        )
    quantized = quantize(delta, clip, levels, rng, dtype)
    vector = np.empty(quantized.size + 1, dtype)
    np.multiply(quantized, dtype.type(weight), out=vector[:-1])
    vector[-1] = weight
    apply_masks(vector, _masks(node_id, sources, state))
    reduce_mod(vector, modulus)
    return ArrayRecord({k.MASKED: vector})


def _masks(node_id: int, sources: list[int], state: ConfigRecord) -> list[tuple[int, bytes]]:
    """The self mask, and a pairwise mask per live neighbour: + toward higher ids, - lower."""
    session, sk_s = scalar(state, k.SESSION, bytes), scalar(state, "sk-s", bytes)
    peers, pk_s = int_list(state, k.PEERS), byte_list(state, k.PEER_PK_S)
    masks = [(1, scalar(state, "seed", bytes))]
    for source in sources:
        peer_key = pk_s[peers.index(source)]
        masks.append((1 if node_id < source else -1, pair_seed(sk_s, peer_key, session)))
    return masks


def _weight_factor(reply: Message, state: ConfigRecord) -> int:
    """The node's integer weight (1 when unweighted); SecAggError if it cannot be summed."""
    if not scalar(state, k.WEIGHTED, bool):
        return 1
    key, cap = scalar(state, k.WEIGHT_KEY, str), scalar(state, k.MAX_WEIGHT, int)
    metrics = reply.content.get(_METRICS)
    value: Any = metrics.get(key) if metrics is not None else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SecAggError(f"secagg: the train reply has no number under metrics[{key!r}]")
    if not math.isfinite(value) or value != int(value) or not 1 <= value <= cap:
        raise SecAggError(
            f"secagg: weight {key}={value} must be a whole number from 1 to max_weight={cap} "
            "(an example count): raise SecAggPlus(max_weight=...) or report counts"
        )
    return int(value)


def _check_clipped(config: ConfigRecord, trained: ArrayRecord, received: ArrayRecord) -> None:
    """ModOrderError if the server asked for a clipped update (DP) and this one is not."""
    clip = config.get(CLIP_NORM_KEY)
    if not isinstance(clip, (int, float)) or isinstance(clip, bool):
        return
    norm = update_norm(trained, received)
    if norm > clip * (1 + NODE_CLIP_SLACK):
        raise ModOrderError(
            f"the update is {norm:.4g} from the global model but the server's DP needs it "
            f"clipped to {CLIP_NORM_KEY}={clip:g}, and cannot clip a sum: add "
            "fixed_clipping_mod after secaggplus_mod, "
            "ClientApp(mods=[secaggplus_mod, fixed_clipping_mod])"
        )


def _layout(arrays: ArrayRecord) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, array.shape) for name, array in arrays.items()]


def _without_secagg(message: Message) -> Message:
    """The train message as the app should see it: its config without ``secagg.*`` keys."""
    content = RecordDict(message.content)
    config = content.config(_CONFIG)
    content[_CONFIG] = ConfigRecord(
        (key, v) for key, v in config.items() if not key.startswith(k.PREFIX)
    )
    return Message(message.metadata, content)


def _forget(context: Context) -> None:
    """Drop the secrets of a round that ended before unmasking (its stage is 'aborted')."""
    held = context.state.get(k.STATE)
    if isinstance(held, ConfigRecord) and set(held) - _KEPT:
        context.state[k.STATE] = _without_secrets(held)


def _without_secrets(state: ConfigRecord) -> ConfigRecord:
    """A copy of ``state`` with only what refuses replays, at stage 'aborted'."""
    kept = ConfigRecord((key, value) for key, value in state.items() if key in _KEPT)
    kept[k.STAGE] = "aborted"
    return kept


def _forget_secrets(state: ConfigRecord) -> None:
    """After unmasking keep only where the node is (to refuse replays), not its secrets."""
    for key in list(state):
        if key not in _KEPT:
            del state[key]
