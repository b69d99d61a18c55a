"""The server's running sum of masked vectors, and the shares that take the masks off it.

Masks left in the sum of the nodes that sent vectors (``summed``): each one's self mask,
and the pairwise masks it shares with live neighbours that dropped before sending theirs
(the pairs of two summed nodes cancel). The first are rebuilt from self-mask seed shares,
the second from the dropped node's mask key, rebuilt from its key shares.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ...errors import RoundError
from ...records import ConfigRecord
from . import _keys as k
from . import _shamir
from ._crypto import SEED_BYTES, public_key
from ._errors import SecAggError
from ._fields import byte_list, int_list
from ._masking import apply_masks, pair_seed, reduce_mod
from ._params import Params, RoundParams
from ._quantize import Vector, vector_dtype

__all__ = ["Unmasking"]

log = logging.getLogger("pollinate.privacy")


class Unmasking:
    """What the server holds of a round after the nodes that shared keys are known."""

    def __init__(
        self,
        params: Params,
        round_params: RoundParams,
        session: bytes,
        graph: Mapping[int, Sequence[int]],
        keys: Mapping[int, tuple[bytes, bytes]],
        sharing: Sequence[int],
        length: int,
    ) -> None:
        self.params, self.round_params, self.session = params, round_params, session
        self.keys = keys
        self.sharing = set(sharing)
        self.live = {node: [j for j in graph[node] if j in self.sharing] for node in sharing}
        self.length = length
        self.total = np.zeros(length, vector_dtype(params.modulus_range))
        self.summed: list[int] = []
        self.responders: set[int] = set()
        """The nodes whose shares were taken at unmasking (before it, every summed node may)."""
        self.seed_shares: dict[int, dict[int, bytes]] = {}
        self.key_shares: dict[int, dict[int, bytes]] = {}
        self.wrong: set[int] = set()
        """Nodes that sent a wrong share: their shares are no longer used."""

    def add(self, node: int, vector: Vector) -> None:
        """Fold one node's masked vector into the sum (wrapping: arithmetic mod 2**bits)."""
        self.total += vector
        self.summed.append(node)

    def summed_neighbours(self, node: int) -> list[int]:
        """The node and its live neighbours that are in the sum: whose seed shares to reveal."""
        summed = set(self.summed)
        return sorted({node, *(j for j in self.live[node] if j in summed)})

    def dropped_neighbours(self, node: int) -> list[int]:
        """Its live neighbours that shared keys but sent no vector: whose key shares to reveal."""
        summed = set(self.summed)
        return sorted(j for j in self.live[node] if j not in summed)

    def take_shares(self, node: int, answer: ConfigRecord) -> bool:
        """Keep a node's shares if it answered exactly what it was asked (else drop them all)."""
        try:
            seed_owners, key_owners = (
                int_list(answer, k.SEED_OWNERS),
                int_list(answer, k.KEY_OWNERS),
            )
            seeds, keys = byte_list(answer, k.SEED_SHARES), byte_list(answer, k.KEY_SHARES)
        except SecAggError:
            return False
        asked = (self.summed_neighbours(node), self.dropped_neighbours(node))
        if (seed_owners, key_owners) != asked or (len(seeds), len(keys)) != tuple(map(len, asked)):
            return False
        if any(not _is_share(share) for share in [*seeds, *keys]):
            return False
        for owner, share in zip(seed_owners, seeds, strict=True):
            self.seed_shares.setdefault(owner, {})[node] = share
        for owner, share in zip(key_owners, keys, strict=True):
            self.key_shares.setdefault(owner, {})[node] = share
        self.responders.add(node)
        return True

    def require_holders(self, server_round: int, stage: str) -> None:
        """RoundError if a mask in the sum can no longer be removed (too few live holders)."""
        threshold = self.round_params.threshold
        if len(self.summed) < threshold:
            raise RoundError(
                f"round {server_round} SecAgg+: only {len(self.summed)} masked vectors arrived "
                f"after stage {stage}, fewer than reconstruction_threshold={threshold}: too "
                "many nodes dropped to release a sum"
            )
        answering = self.responders if stage == "unmasking" else set(self.summed)
        short = [
            f"node {owner}'s {what} has {held} of {threshold} shares"
            for owner, what, held in self._holders(answering)
            if held < threshold
        ]
        if short:
            shares = self.round_params.num_shares
            raise RoundError(
                f"round {server_round} SecAgg+ cannot be unmasked after stage {stage}: "
                f"{'; '.join(short[:3])}{' ...' if len(short) > 3 else ''} (too many nodes "
                f"dropped: num_shares={shares} with threshold={threshold} survives "
                f"{shares - threshold} dropped holders per node): raise num_shares or lower "
                "reconstruction_threshold"
            )

    def _holders(self, answering: set[int]) -> list[tuple[int, str, int]]:
        summed = set(self.summed)
        counts = [
            (owner, "self-mask seed", len(({owner} | set(self.live[owner])) & answering))
            for owner in self.summed
        ]
        counts += [
            (owner, "mask key", len(set(self.live[owner]) & answering))
            for owner in self.sharing - summed
            if set(self.live[owner]) & summed
        ]
        return counts

    def unmasked(self, server_round: int) -> tuple[Vector, int]:
        """The sum with every mask removed: (weighted quantized deltas, total weight)."""
        masks: list[tuple[int, bytes]] = []
        for owner in self.summed:
            seed = self._rebuild(self.seed_shares, owner, server_round)
            masks.append((-1, seed))
        summed = set(self.summed)
        for owner in sorted(self.sharing - summed):
            if not set(self.live[owner]) & summed:
                continue
            matches = functools.partial(_matches, self.keys[owner][1])
            private = self._rebuild(self.key_shares, owner, server_round, matches)
            for node in self.live[owner]:
                if node in summed:  # it added +mask if node < owner, else -mask: undo that
                    sign = -1 if node < owner else 1
                    masks.append((sign, pair_seed(private, self.keys[node][1], self.session)))
        total = self.total
        apply_masks(total, masks)
        reduce_mod(total, self.params.modulus_range)
        return total[:-1], int(total[-1])

    def _rebuild(
        self,
        shares: Mapping[int, Mapping[int, bytes]],
        owner: int,
        server_round: int,
        check: Callable[[bytes], bool] | None = None,
    ) -> bytes:
        """A secret from its shares, outvoting wrong ones; their senders are set aside.

        ``check`` tells the right secret (a mask key must match its public key).
        """
        held = {x: y for x, y in shares.get(owner, {}).items() if x not in self.wrong}
        threshold = self.round_params.threshold
        try:
            secret, wrong = _shamir.combine(held, threshold, SEED_BYTES, check)
        except ValueError as err:
            raise RoundError(
                f"round {server_round} SecAgg+: node {owner}'s secret cannot be rebuilt: {err} "
                "(a node sent a wrong share)"
            ) from None
        for holder in wrong:
            log.warning(
                "round %d SecAgg+: node %d sent a wrong share of node %d's secret: its shares "
                "are set aside (outvoted by the other holders)",
                server_round,
                holder,
                owner,
            )
        self.wrong.update(wrong)
        return secret


def _matches(advertised: bytes, private: bytes) -> bool:
    """Whether ``private`` is the mask key of the public key its node advertised."""
    return public_key(private) == advertised


def _is_share(share: bytes) -> bool:
    """Whether ``share`` is a field element written as ``_shamir.split`` writes one."""
    return len(share) == _shamir.SHARE_BYTES and int.from_bytes(share, "big") < _shamir.PRIME
