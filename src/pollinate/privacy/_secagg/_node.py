"""The node's side of each SecAgg+ stage; its secrets for the round live in context.state.

Each function takes the stage's ``config`` (the masking stage: its message, the node's
context and the app's handler) and the node's state record (a ConfigRecord it updates),
and returns its answer: a ConfigRecord, or for masking the ArrayRecord of the vector.
"""

from __future__ import annotations

import math
import os
import secrets
from typing import Any

import numpy as np

from ...client import Handler
from ...context import Context
from ...message import Message
from ...records import ArrayRecord, ConfigRecord, RecordDict
from .._central import CLIP_NORM_KEY, beyond_clip
from . import _keys as k
from . import _shamir
from ._crypto import SEED_BYTES, agree, key_pair, open_sealed, public_key, seal
from ._errors import ModOrderError, SecAggError
from ._fields import byte_list, int_list, scalar
from ._masking import apply_masks, pair_seed, reduce_mod
from ._quantize import flat_delta, quantize, vector_dtype

__all__ = ["MAX_NEIGHBOURS", "masking", "open_shares", "setup", "share_keys", "unmask"]

MAX_NEIGHBOURS = 1000
"""The most neighbours a node shares its secrets with (Shamir costs grow as their square)."""

_SETTINGS: tuple[tuple[str, type[int | float | str | bool]], ...] = (
    (k.THRESHOLD, int),
    (k.CLIPPING, float),
    (k.QUANTIZATION, int),
    (k.MODULUS_BITS, int),
    (k.MAX_WEIGHT, int),
    (k.WEIGHT_KEY, str),
    (k.WEIGHTED, bool),
)
_ARRAYS, _CONFIG, _METRICS = "arrays", "config", "metrics"
_HOLDERS = "holders"
_OWN_SEED_SHARES, _OWN_KEY_SHARES = "seed-shares", "key-shares"


def setup(
    config: ConfigRecord, node_id: int, state: ConfigRecord, floors: tuple[int, int]
) -> ConfigRecord:
    """Store the round's settings, make two key pairs and a self-mask seed; answer the keys.

    ``floors`` are the node operator's least neighbours and least threshold.
    """
    neighbours = int_list(config, k.NEIGHBOURS)
    if node_id in neighbours or len(set(neighbours)) != len(neighbours):
        raise SecAggError("secagg: the neighbour list repeats a node or names this node")
    for key, kind in _SETTINGS:
        state[key] = scalar(config, key, kind)  # type: ignore[type-var]
    _check_settings(state)
    if len(neighbours) > MAX_NEIGHBOURS:
        raise SecAggError(
            f"secagg: the server named {len(neighbours)} neighbours, more than the "
            f"{MAX_NEIGHBOURS} a node shares its secrets with: refused"
        )
    threshold = scalar(config, k.THRESHOLD, int)
    _check_floors(len(neighbours), threshold, floors)
    if len(neighbours) < 2 or not 2 * threshold > len(neighbours) + 1 >= threshold:
        raise SecAggError(
            f"secagg: reconstruction threshold {threshold} is unsafe or unreachable for "
            f"{len(neighbours)} neighbours (it must be a majority of the node and its "
            "neighbours, and a node needs at least 2 of them)"
        )
    state[k.NEIGHBOURS] = neighbours
    sk_c, pk_c = key_pair()
    sk_s, pk_s = key_pair()
    state["sk-c"], state["sk-s"], state["seed"] = sk_c, sk_s, os.urandom(SEED_BYTES)
    return ConfigRecord({k.PK_C: pk_c, k.PK_S: pk_s})


def _check_floors(neighbours: int, threshold: int, floors: tuple[int, int]) -> None:
    """SecAggError if the server's neighbourhood or threshold is below the operator's floor."""
    least_neighbours, least_threshold = floors
    if neighbours < least_neighbours:
        raise SecAggError(
            f"secagg: the server gave {neighbours} neighbours, fewer than this node's floor "
            f"of {least_neighbours}: refused (raise SecAggPlus num_shares to at least "
            f"{least_neighbours + 1}, or lower SecAggPlusMod(min_neighbours=...) on the node)"
        )
    if threshold < least_threshold:
        raise SecAggError(
            f"secagg: reconstruction threshold {threshold} is below this node's floor of "
            f"{least_threshold}: refused (raise SecAggPlus reconstruction_threshold, or lower "
            "SecAggPlusMod(min_threshold=...) on the node)"
        )


def _check_settings(state: ConfigRecord) -> None:
    """SecAggError, naming the setting, unless the server's settings are ones it may send.

    ``SecAggPlus`` never sends others; a hostile server could, to make the node spend
    unbounded time or memory, or send a masked vector that wraps (and so leaks).
    """
    bits = scalar(state, k.MODULUS_BITS, int)
    if not 1 <= bits <= 64:
        raise SecAggError(f"secagg: modulus bits {bits} must be from 1 to 64: refused")
    levels, clip = scalar(state, k.QUANTIZATION, int), scalar(state, k.CLIPPING, float)
    if not 2 <= levels < 2**bits:
        raise SecAggError(
            f"secagg: quantization range {levels} must be from 2 to {2**bits - 1} (below "
            "the modulus): refused"
        )
    if not (math.isfinite(clip) and clip > 0):
        raise SecAggError(f"secagg: clipping range {clip} must be a finite positive number")
    cap = scalar(state, k.MAX_WEIGHT, int)
    if cap < 1:
        raise SecAggError(f"secagg: max weight {cap} must be at least 1: refused")
    if cap * (levels - 1) >= 2**bits:
        raise SecAggError(
            f"secagg: max weight {cap} x (quantization range - 1) cannot fit the modulus "
            f"2**{bits}: refused (one node's vector would wrap)"
        )


def share_keys(config: ConfigRecord, node_id: int, state: ConfigRecord) -> ConfigRecord:
    """Check the relayed keys, Shamir-share the seed and mask key, seal one share per peer."""
    peers = int_list(config, k.PEERS)
    pk_c, pk_s = byte_list(config, k.PEER_PK_C), byte_list(config, k.PEER_PK_S)
    neighbours = set(int_list(state, k.NEIGHBOURS))
    if len(pk_c) != len(peers) or len(pk_s) != len(peers) or len(set(peers)) != len(peers):
        raise SecAggError("secagg: the relayed public keys do not match the peer list")
    if node_id not in peers or not set(peers) - {node_id} <= neighbours:
        raise SecAggError("secagg: the peer list names nodes that are not this node's neighbours")
    own = peers.index(node_id)
    mine = (public_key(scalar(state, "sk-c", bytes)), public_key(scalar(state, "sk-s", bytes)))
    if (pk_c[own], pk_s[own]) != mine:
        raise SecAggError(
            "secagg: the server relayed other public keys for this node than it advertised: "
            "refused (keys must be bound to their node)"
        )
    threshold = scalar(state, k.THRESHOLD, int)
    if len(peers) < threshold:
        raise SecAggError(
            f"secagg: only {len(peers) - 1} neighbours are left to hold shares, the threshold "
            f"needs {threshold} holders"
        )
    seed_shares = _shamir.split(scalar(state, "seed", bytes), threshold, peers)
    key_shares = _shamir.split(scalar(state, "sk-s", bytes), threshold, peers)
    session = scalar(state, k.SESSION, bytes)
    destinations, sealed = [], []
    for peer, peer_c in zip(peers, pk_c, strict=True):
        if peer == node_id:
            continue
        key = agree(scalar(state, "sk-c", bytes), peer_c, session, k.SHARE_LABEL)
        plaintext = _ids(node_id, peer) + seed_shares[peer] + key_shares[peer]
        sealed.append(seal(key, plaintext, _associated(session, node_id, peer)))
        destinations.append(peer)
    state[k.PEERS], state[k.PEER_PK_C], state[k.PEER_PK_S] = peers, pk_c, pk_s
    state[_HOLDERS] = [node_id]
    state[_OWN_SEED_SHARES], state[_OWN_KEY_SHARES] = [seed_shares[node_id]], [key_shares[node_id]]
    return ConfigRecord({k.DESTINATIONS: destinations, k.CIPHERTEXTS: sealed})


def open_shares(config: ConfigRecord, node_id: int, state: ConfigRecord) -> list[int]:
    """Open the shares relayed to this node and keep them; its live neighbours, in order."""
    sources, sealed = int_list(config, k.SOURCES), byte_list(config, k.CIPHERTEXTS)
    peers = int_list(state, k.PEERS)
    if len(sources) != len(sealed) or len(set(sources)) != len(sources):
        raise SecAggError("secagg: the relayed shares do not match their senders")
    if node_id in sources or not set(sources) <= set(peers):
        raise SecAggError("secagg: shares were relayed from nodes that are not live neighbours")
    threshold = scalar(state, k.THRESHOLD, int)
    if len(sources) + 1 < threshold:
        raise SecAggError(
            f"secagg: only {len(sources)} neighbours shared keys; {threshold - 1} are needed "
            "for the threshold"
        )
    session, sk_c = scalar(state, k.SESSION, bytes), scalar(state, "sk-c", bytes)
    pk_c = byte_list(state, k.PEER_PK_C)
    seed_shares, key_shares = byte_list(state, _OWN_SEED_SHARES), byte_list(state, _OWN_KEY_SHARES)
    size = _shamir.SHARE_BYTES
    for source, box in zip(sources, sealed, strict=True):
        key = agree(sk_c, pk_c[peers.index(source)], session, k.SHARE_LABEL)
        what = f"the share from node {source}"
        plaintext = open_sealed(key, box, _associated(session, source, node_id), what)
        if plaintext[:16] != _ids(source, node_id) or len(plaintext) != 16 + 2 * size:
            raise SecAggError(f"secagg: {what} names other nodes than its sender and receiver")
        seed_shares.append(plaintext[16 : 16 + size])
        key_shares.append(plaintext[16 + size :])
    state[_HOLDERS] = [node_id, *sources]
    state[_OWN_SEED_SHARES], state[_OWN_KEY_SHARES] = seed_shares, key_shares
    return sources


def masking(
    message: Message, context: Context, call_next: Handler, state: ConfigRecord
) -> ArrayRecord:
    """Open the shares, train, and answer the masked, quantized, weighted model delta.

    The only stage that calls the app's train handler (``call_next``), on the train
    message with its ``secagg.*`` keys taken out.
    """
    node_id = context.node_id
    config = message.content.config(_CONFIG)
    sources = open_shares(config, node_id, state)
    received = message.content.get(_ARRAYS)
    if not isinstance(received, ArrayRecord):
        raise SecAggError("secagg: the masking stage carries no model under 'arrays'")
    context.state.pop(k.CLIPPED, None)  # a clipping mod marks each reply it clips
    reply = call_next(_without_secagg(message), context)
    if reply.has_error:
        raise SecAggError(f"secagg: the app's train handler failed: {reply.error}")
    _check_clipping_mod(config, context.state.pop(k.CLIPPED, None) is not None)
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


def _check_clipping_mod(config: ConfigRecord, clipped: bool) -> None:
    """ModOrderError if the server asked for clipped updates (DP) and no clipping mod ran."""
    clip = config.get(CLIP_NORM_KEY)
    if isinstance(clip, (int, float)) and not clipped:
        raise _unclipped(
            f"no clipping mod ran, but the server's DP needs updates clipped to "
            f"{CLIP_NORM_KEY}={clip:g}"
        )


def _check_clipped(config: ConfigRecord, trained: ArrayRecord, received: ArrayRecord) -> None:
    """ModOrderError if the server asked for a clipped update (DP) and this one is not."""
    clip = config.get(CLIP_NORM_KEY)
    if not isinstance(clip, (int, float)) or isinstance(clip, bool):
        return
    norm = beyond_clip(trained, received, float(clip))
    if norm is not None:
        raise _unclipped(
            f"the update is {norm:.4g} from the global model but the server's DP needs it "
            f"clipped to {CLIP_NORM_KEY}={clip:g}"
        )


def _unclipped(what: str) -> ModOrderError:
    return ModOrderError(
        f"{what}, and cannot clip a sum: add fixed_clipping_mod after secaggplus_mod, "
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


def unmask(config: ConfigRecord, node_id: int, state: ConfigRecord) -> ConfigRecord:
    """Reveal seed shares of the nodes in the sum and key shares of those that dropped.

    Never both for one node: with both, the server would see that node's update. The
    request must also be one an honest server sends (``_check_survivors``).
    """
    active, dropped = int_list(config, k.ACTIVE), int_list(config, k.DROPPED)
    holders = int_list(state, _HOLDERS)
    if set(active) & set(dropped):
        both = sorted(set(active) & set(dropped))
        raise SecAggError(
            f"secagg: the server asked for both the self-mask and the mask-key shares of "
            f"node(s) {both}: refused, that would reveal their updates"
        )
    if node_id not in active:
        raise SecAggError("secagg: asked to unmask a sum this node's vector is not in: refused")
    _check_survivors(active, dropped, holders, scalar(state, k.THRESHOLD, int))
    seeds, keys = byte_list(state, _OWN_SEED_SHARES), byte_list(state, _OWN_KEY_SHARES)
    return ConfigRecord(
        {
            k.SEED_OWNERS: active,
            k.SEED_SHARES: [seeds[holders.index(owner)] for owner in active],
            k.KEY_OWNERS: dropped,
            k.KEY_SHARES: [keys[holders.index(owner)] for owner in dropped],
        }
    )


def _check_survivors(
    active: list[int], dropped: list[int], holders: list[int], threshold: int
) -> None:
    """SecAggError unless the survivor story is one an honest server tells this node.

    An honest server names each live neighbour (those whose shares this node opened at
    masking) once, as in the sum or dropped, and only asks when at least ``threshold`` of
    the node's neighbourhood is in the sum (else it could not unmask the node's own seed).
    These checks narrow a server that lies about dropouts; they cannot stop one that tells
    each node a different, locally plausible story (docs/secure-aggregation.md).
    """
    if len(active) != len(set(active)) or len(dropped) != len(set(dropped)):
        raise SecAggError("secagg: the unmasking request names a node twice: refused")
    if set(active) | set(dropped) != set(holders):
        raise SecAggError(
            "secagg: the unmasking request's nodes in the sum and dropped are not the "
            "neighbours that shared keys with it: refused (a server lying about dropouts)"
        )
    if len(active) < threshold:
        raise SecAggError(
            f"secagg: only {len(active)} node(s) in the sum of this node's neighbourhood, "
            f"fewer than the threshold {threshold}: refused (an honest server cannot unmask "
            "such a sum, a lying one could use the shares to see an update)"
        )


def _ids(source: int, destination: int) -> bytes:
    return source.to_bytes(8, "big", signed=True) + destination.to_bytes(8, "big", signed=True)


def _associated(session: bytes, source: int, destination: int) -> bytes:
    """What a sealed share is bound to: the round's session, its stage, sender and receiver."""
    return session + b"share-keys" + _ids(source, destination)
