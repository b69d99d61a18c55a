"""``secaggplus_mod``: the ClientApp mod that answers every SecAgg+ stage on a node.

Stage messages are ``train`` messages whose config carries ``secagg.stage``; any other
message passes straight to the app. The mod only dispatches each stage to ``_node``
(where the masking stage calls the app's train handler) and keeps the round's secrets in
``context.state`` between stages: it refuses a message that is not the next stage of the
round it is in (a replay, or one from another round), and forgets the secrets as soon as
the round ends, however it ends.
"""

from __future__ import annotations

from ...client import Handler
from ...context import Context
from ...errors import ConfigError
from ...message import ErrorCode, Message, MessageType
from ...records import ConfigRecord, RecordDict
from . import _keys as k
from . import _node
from ._errors import SecAggError
from ._fields import byte_list, scalar

__all__ = ["SecAggPlusMod", "secaggplus_mod"]

_CONFIG = "config"
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
            _forget(context)  # a refused message ends the round it would have been part of
            return message.reply_error(ErrorCode.PROTOCOL_REFUSED, f"{type(err).__name__}: {err}")
        return message.reply(answer)

    def _answer(
        self, message: Message, config: ConfigRecord, context: Context, call_next: Handler
    ) -> RecordDict:
        stage = scalar(config, k.STAGE, str)
        state = _state_for(stage, config, context)
        # until the stage succeeds: a stage that fails leaves no secret, and the app's
        # train handler (called at masking) has none in reach
        context.state[k.STATE] = _without_secrets(state)
        node_id = context.node_id
        if stage == "setup":
            floors = (self.min_neighbours, self.min_threshold)
            answer = RecordDict({k.RECORD: _node.setup(config, node_id, state, floors)})
        elif stage == "share-keys":
            answer = RecordDict({k.RECORD: _node.share_keys(config, node_id, state)})
        elif stage == "masking":
            answer = RecordDict({k.RECORD: _node.masking(message, context, call_next, state)})
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
        where = "no round"
        if state is not None:
            where = (
                f"round {scalar(state, k.ROUND, int)} after stage {scalar(state, k.STAGE, str)!r}"
            )
        raise SecAggError(
            f"secagg: refused stage {stage!r} of round {server_round}: this node is at "
            f"{where} (a replayed, out-of-order or other session's message)"
        )
    return state


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
