"""The server's side of one SecAgg+ round: four Grid exchanges, then the unmasked sum.

1. setup: each sampled node gets the settings and its neighbours, and answers two public
   keys (one to encrypt shares, one for pairwise masks).
2. share-keys: each node that answered gets its live neighbours' keys, and answers its
   self-mask seed and mask key Shamir-shared, one sealed share per neighbour.
3. masking: each node that shared gets the train message plus the shares sealed for it,
   trains, and answers its masked vector; the server sums the vectors as they come.
4. unmasking: each node in the sum is told who is in it and who dropped, and answers shares:
   self-mask seeds of those in the sum, mask keys of those that dropped after sharing.

Nodes that drop are left out at the stage where they drop; the round fails, in one
RoundError, once a secret it needs has fewer live holders than the threshold.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import RoundError
from ...message import ErrorCode, Message
from ...records import ArrayRecord, ConfigRecord, ConfigValue, RecordDict
from ...server import Failure, Grid
from . import _keys as k
from ._crypto import is_valid_public_key
from ._errors import ModOrderError, SecAggError
from ._fields import byte_list, int_list, scalar
from ._graph import neighbours
from ._params import Params, RoundParams
from ._quantize import vector_dtype
from ._unmask import Unmasking

__all__ = ["SecureTrain"]

log = logging.getLogger("pollinate.privacy")

_CONFIG = "config"
_PUBLIC_KEY_BYTES = 32
_NO_MOD = (
    "answered without secaggplus_mod: add it to their ClientApp "
    "(ClientApp(..., mods=[secaggplus_mod]), from pollinate.privacy); a VectorizedClientApp "
    "cannot run mods, so run SecAgg+ on the inline or process backend"
)


@dataclass
class SecureTrain:
    """One round's protocol run: what the server learns stage by stage."""

    grid: Grid
    server_round: int
    messages: dict[int, Message]
    params: Params
    round_params: RoundParams
    weight_key: str
    weighted: bool
    graph_seed: int
    timeout_s: float | None
    session: bytes = field(default_factory=lambda: os.urandom(16))
    failures: list[Failure] = field(default_factory=list)

    def run(self, length: int) -> Unmasking:
        """All four stages for a model of ``length - 1`` numbers; what unmasks the sum."""
        nodes = sorted(self.messages)
        graph = neighbours(nodes, self.round_params.num_shares, self.graph_seed)
        keys = self._setup(graph)
        sealed, sharing = self._share_keys(graph, keys)
        unmasking = Unmasking(
            self.params, self.round_params, self.session, graph, keys, sharing, length
        )
        self._masking(sealed, unmasking)
        self._require_holders(unmasking, "masking")
        self._unmask(unmasking)
        return unmasking

    def _require_holders(self, unmasking: Unmasking, stage: str) -> None:
        """``unmasking.require_holders``, its error naming why the first nodes dropped."""
        try:
            unmasking.require_holders(self.server_round, stage)
        except RoundError as err:
            shown = _by_reason(self.failures)
            raise RoundError(f"{err}; {shown}" if shown else str(err)) from None

    # -- stages ---------------------------------------------------------------------------

    def _setup(self, graph: Mapping[int, list[int]]) -> dict[int, tuple[bytes, bytes]]:
        settings: dict[str, ConfigValue] = {
            k.THRESHOLD: self.round_params.threshold,
            k.CLIPPING: float(self.params.clipping_range),
            k.QUANTIZATION: self.params.quantization_range,
            k.MODULUS_BITS: self.params.modulus_range.bit_length() - 1,
            k.MAX_WEIGHT: self.round_params.weight_cap,
            k.WEIGHT_KEY: self.weight_key,
            k.WEIGHTED: self.weighted,
        }
        asks = {node: {**settings, k.NEIGHBOURS: graph[node]} for node in graph}
        keys: dict[int, tuple[bytes, bytes]] = {}
        missing_mod: list[int] = []
        first_reason = ""
        for node, reply in self._exchange("setup", asks):
            self._refuse_mod_order(node, reply)
            if _lacks_mod(reply):
                missing_mod.append(node)
                first_reason = first_reason or _reason(reply)
                continue
            answer = self._answer(node, "setup", reply)
            if answer is None:
                continue
            try:
                pair = (scalar(answer, k.PK_C, bytes), scalar(answer, k.PK_S, bytes))
            except SecAggError as err:
                self._fail(node, "setup", str(err))
                continue
            if {len(key) for key in pair} != {_PUBLIC_KEY_BYTES} or not all(
                map(is_valid_public_key, pair)
            ):
                # set aside before share-keys: its neighbours would each fail to agree with it
                self._fail(node, "setup", "answered a public key that is not a valid X25519 key")
                continue
            keys[node] = pair
        if missing_mod:
            raise RoundError(
                f"round {self.server_round} SecAgg+: node(s) {_list(missing_mod)} {_NO_MOD} "
                f"(node {missing_mod[0]}: {first_reason})"
            )
        return keys

    def _share_keys(
        self, graph: Mapping[int, list[int]], keys: Mapping[int, tuple[bytes, bytes]]
    ) -> tuple[dict[int, list[tuple[int, bytes]]], list[int]]:
        """Relay live neighbours' keys; the sealed shares by receiver, and who shared."""
        asks: dict[int, dict[str, ConfigValue]] = {}
        live_peers: dict[int, list[int]] = {}
        for node in keys:
            peers = sorted(peer for peer in [node, *graph[node]] if peer in keys)
            live_peers[node] = [peer for peer in peers if peer != node]
            asks[node] = {
                k.PEERS: peers,
                k.PEER_PK_C: [keys[peer][0] for peer in peers],
                k.PEER_PK_S: [keys[peer][1] for peer in peers],
            }
        shared: set[int] = set()
        sealed: dict[int, list[tuple[int, bytes]]] = {node: [] for node in keys}
        for node, reply in self._exchange("share-keys", asks):
            answer = self._answer(node, "share-keys", reply)
            if answer is None:
                continue
            try:
                destinations = int_list(answer, k.DESTINATIONS)
                boxes = byte_list(answer, k.CIPHERTEXTS)
            except SecAggError as err:
                self._fail(node, "share-keys", str(err))
                continue
            if len(destinations) != len(boxes) or destinations != live_peers[node]:
                # a pair's masks cancel only if both ends share with each other
                self._fail(node, "share-keys", "did not share with exactly its live neighbours")
                continue
            shared.add(node)
            for destination, box in zip(destinations, boxes, strict=True):
                if destination in sealed:
                    sealed[destination].append((node, box))
        relayed = {
            node: [(src, box) for src, box in boxes if src in shared]
            for node, boxes in sealed.items()
            if node in shared
        }
        return relayed, sorted(shared)

    def _masking(self, sealed: Mapping[int, list[tuple[int, bytes]]], unmasking: Unmasking) -> None:
        """Send each sharing node its train message and shares; sum the masked vectors."""
        asks: dict[int, dict[str, ConfigValue]] = {
            node: {
                k.SOURCES: [src for src, _ in boxes],
                k.CIPHERTEXTS: [box for _, box in boxes],
            }
            for node, boxes in sealed.items()
        }
        for node, reply in self._exchange("masking", asks, with_train=True):
            self._refuse_mod_order(node, reply)
            if reply.has_error:
                self._fail(node, "masking", _reason(reply))
                continue
            vector = _masked_vector(
                reply, unmasking.length, vector_dtype(self.params.modulus_range)
            )
            if vector is None:
                self._fail(node, "masking", "sent no masked vector of the model's size")
                continue
            unmasking.add(node, vector)

    def _unmask(self, unmasking: Unmasking) -> None:
        """Ask the nodes in the sum for the shares that remove every mask left in it."""
        asks: dict[int, dict[str, ConfigValue]] = {
            node: {
                k.ACTIVE: unmasking.summed_neighbours(node),
                k.DROPPED: unmasking.dropped_neighbours(node),
            }
            for node in unmasking.summed
        }
        for node, reply in self._exchange("unmasking", asks):
            answer = None if reply.has_error else _config_answer(reply)
            if answer is None:
                log.warning(
                    "round %d SecAgg+: node %d (in the sum) dropped at unmasking: %s",
                    self.server_round,
                    node,
                    _reason(reply) if reply.has_error else "no shares",
                )
                continue
            if not unmasking.take_shares(node, answer):
                log.warning(
                    "round %d SecAgg+: node %d answered other shares than asked, or a wrong "
                    "share that is not a field element: set aside",
                    self.server_round,
                    node,
                )
        self._require_holders(unmasking, "unmasking")

    # -- exchanges ------------------------------------------------------------------------

    def _exchange(
        self,
        stage: str,
        asks: Mapping[int, Mapping[str, ConfigValue]],
        with_train: bool = False,
    ) -> Iterable[tuple[int, Message]]:
        """Send each node its stage message; yield (node, reply) in send order."""
        header: dict[str, ConfigValue] = {
            k.STAGE: stage,
            k.ROUND: self.server_round,
            k.SESSION: self.session,
        }
        messages = [
            self._message(node, {**header, **ask}, with_train) for node, ask in asks.items()
        ]
        ids = self.grid.send(messages)
        nodes = [message.metadata.dst_node_id for message in messages]
        by_id = dict(zip(ids, nodes, strict=True))
        timeout = self.params.timeout if self.params.timeout is not None else self.timeout_s
        for reply in self.grid.receive_in_order(ids, timeout):
            node = by_id.get(reply.metadata.reply_to_message_id)
            if node is not None:
                yield node, reply

    def _message(self, node: int, values: Mapping[str, ConfigValue], with_train: bool) -> Message:
        train = self.messages[node]  # every stage keeps its type: "train" or "train.<name>"
        if not with_train:
            content = RecordDict({_CONFIG: ConfigRecord(values)})
            kind = train.metadata.message_type
            return Message.create(content, node, kind, run_id=self.grid.run_id)
        content = RecordDict(train.content)
        config = content.get(_CONFIG)
        merged = ConfigRecord(config) if isinstance(config, ConfigRecord) else ConfigRecord()
        merged.update(values)
        content[_CONFIG] = merged
        return Message.create(content, node, train.metadata.message_type, run_id=self.grid.run_id)

    def _answer(self, node: int, stage: str, reply: Message) -> ConfigRecord | None:
        """The node's answer to a stage (None, with its failure kept, if it has none)."""
        if reply.has_error:
            self._fail(node, stage, _reason(reply))
            return None
        answer = _config_answer(reply)
        if answer is None:
            self._fail(node, stage, "answered without a secagg record")
        return answer

    def _refuse_mod_order(self, node: int, reply: Message) -> None:
        """RoundError with the node's own words if its mods cannot run SecAgg+ as set up."""
        error = reply.error
        if error is not None and f"{ModOrderError.__name__}: " in error.reason:
            reason = error.reason.split(f"{ModOrderError.__name__}: ", 1)[1].rsplit(" (at ", 1)[0]
            raise RoundError(f"round {self.server_round} SecAgg+: node {node}: {reason}")

    def _fail(self, node: int, stage: str, reason: str) -> None:
        self.failures.append(Failure(node, f"dropped at SecAgg+ stage {stage}: {reason}"))


def _config_answer(reply: Message) -> ConfigRecord | None:
    answer = reply.content.get(k.RECORD)
    return answer if isinstance(answer, ConfigRecord) else None


def _masked_vector(reply: Message, length: int, dtype: np.dtype[Any]) -> Any:
    record = reply.content.get(k.RECORD)
    if not isinstance(record, ArrayRecord) or k.MASKED not in record:
        return None
    vector = record[k.MASKED].numpy()
    if vector.shape != (length,) or vector.dtype != dtype:
        return None
    return vector


def _lacks_mod(reply: Message) -> bool:
    """Whether the node's app, not secaggplus_mod, answered a setup message.

    The mod answers every setup with its record or a PROTOCOL_REFUSED error; an app
    without it answers with an ordinary reply or its handler raises (there is no model to
    train). Any other error (a refusal, a timeout, a garbled reply) is the node dropping.
    """
    if reply.error is None:
        return _config_answer(reply) is None
    return reply.error.code == ErrorCode.CLIENT_APP_RAISED


def _reason(reply: Message) -> str:
    error = reply.error
    if error is None:
        return "no answer"
    try:
        code = ErrorCode(error.code).name
    except ValueError:
        code = str(error.code)
    return f"{code}: {error.reason}"


def _by_reason(failures: list[Failure], shown: int = 3) -> str:
    """The failures grouped by reason, each reason once with its nodes (the first few)."""
    nodes: dict[str, list[int]] = {}
    for failure in failures:
        nodes.setdefault(failure.reason, []).append(failure.node_id)
    groups = [
        f"node{'s' if len(ids) > 1 else ''} {_list(sorted(ids))}: {reason}"
        for reason, ids in list(nodes.items())[:shown]
    ]
    more = len(nodes) - shown
    return "; ".join(groups) + (f" (and {more} other reasons)" if more > 0 else "")


def _list(nodes: list[int]) -> str:
    shown = ", ".join(str(node) for node in nodes[:10])
    return shown + (f" (and {len(nodes) - 10} more)" if len(nodes) > 10 else "")
