"""The names SecAgg+ messages and node state use, shared by the server workflow and the mod.

Every stage message is a ``train`` message whose ``config`` record carries ``secagg.*``
keys; a node's reply carries its stage's answer in a ConfigRecord (or, for the masked
vector, an ArrayRecord) under ``RECORD``.
"""

from __future__ import annotations

__all__ = [
    "ACTIVE",
    "CIPHERTEXTS",
    "CLIPPED",
    "CLIPPING",
    "COUNT",
    "DESTINATIONS",
    "DROPPED",
    "KEY_OWNERS",
    "KEY_SHARES",
    "MASKED",
    "MASK_LABEL",
    "MAX_WEIGHT",
    "MODULUS_BITS",
    "NEIGHBOURS",
    "PEERS",
    "PEER_PK_C",
    "PEER_PK_S",
    "PK_C",
    "PK_S",
    "PREFIX",
    "QUANTIZATION",
    "RECORD",
    "ROUND",
    "SEED_OWNERS",
    "SEED_SHARES",
    "SESSION",
    "SHARE_LABEL",
    "SOURCES",
    "STAGE",
    "STAGES",
    "STATE",
    "THRESHOLD",
    "WEIGHTED",
    "WEIGHT_KEY",
]

PREFIX = "secagg."
RECORD = "secagg"
"""Where a node's reply holds its answer."""
STATE = "secagg.node"
"""Where a node's context.state holds its round: where it is, and its secrets until unmasking."""
COUNT = "secagg.count"
CLIPPED = "secagg.clipped"
"""Where ``fixed_clipping_mod`` marks, in a node's context.state, the reply it just clipped:
a masking stage whose server asked for clipped updates checks that a clipping mod ran."""

STAGE = "secagg.stage"
STAGES = ("setup", "share-keys", "masking", "unmasking")
ROUND = "secagg.round"
SESSION = "secagg.session"

# setup: the server's settings and the node's neighbours; the node answers with its keys
NEIGHBOURS = "secagg.neighbours"
THRESHOLD = "secagg.threshold"
CLIPPING = "secagg.clipping-range"
QUANTIZATION = "secagg.quantization-range"
MODULUS_BITS = "secagg.modulus-bits"
MAX_WEIGHT = "secagg.max-weight"
WEIGHT_KEY = "secagg.weight-key"
WEIGHTED = "secagg.weighted"
PK_C = "secagg.pk-c"
PK_S = "secagg.pk-s"

# share-keys: the live neighbours' keys; the node answers with sealed shares, one each
PEERS = "secagg.peers"
PEER_PK_C = "secagg.peer-pk-c"
PEER_PK_S = "secagg.peer-pk-s"
DESTINATIONS = "secagg.destinations"
CIPHERTEXTS = "secagg.ciphertexts"

# masking: the shares sealed for the node, with their senders; it answers a masked vector
SOURCES = "secagg.sources"
MASKED = "masked"

# unmasking: who is in the sum and who dropped; the node answers with the shares asked for
ACTIVE = "secagg.active"
DROPPED = "secagg.dropped"
SEED_OWNERS = "secagg.seed-owners"
SEED_SHARES = "secagg.seed-shares"
KEY_OWNERS = "secagg.key-owners"
KEY_SHARES = "secagg.key-shares"

SHARE_LABEL = b"pollinate secagg+ share encryption"
MASK_LABEL = b"pollinate secagg+ pairwise mask"
