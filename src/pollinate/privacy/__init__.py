"""Privacy: differential privacy pieces, their accounting, and secure aggregation.

Opacus and dp-accounting are imported only when used: ``pip install 'pollinate[privacy]'``.
"""

from __future__ import annotations

# DP-SGD on the node (Opacus)
from ._dpsgd import DPSGD_STATE_KEY, NODE_DELTA_KEY, NODE_EPSILON_KEY, DpSgd

__all__ = [
    # DP-SGD on the node (Opacus)
    "DPSGD_STATE_KEY",
    "DpSgd",
    "NODE_DELTA_KEY",
    "NODE_EPSILON_KEY",
]
