"""The round's communication graph: each node's neighbours, who hold its shares.

SecAgg+ replaces SecAgg's complete graph with a sparse random one (Bell et al. 2020 use a
random Harary graph): the sampled nodes are placed on a ring in a random order and each is
joined to the ``(num_shares - 1) / 2`` nodes on either side. The server draws the order
from a seed and tells each node its neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["neighbours"]


def neighbours(nodes: Sequence[int], num_shares: int, seed: int) -> dict[int, list[int]]:
    """Each node's neighbours (sorted): ``num_shares - 1`` of them, or all others if fewer."""
    count = len(nodes)
    if num_shares >= count:
        return {node: sorted(set(nodes) - {node}) for node in nodes}
    ring = [nodes[i] for i in np.random.default_rng(seed).permutation(count)]
    half = (num_shares - 1) // 2
    return {
        node: sorted(ring[(position + offset) % count] for offset in _offsets(half))
        for position, node in enumerate(ring)
    }


def _offsets(half: int) -> list[int]:
    return [offset for step in range(1, half + 1) for offset in (step, -step)]
