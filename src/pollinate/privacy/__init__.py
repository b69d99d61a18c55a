"""Differential privacy and secure aggregation on the main API (docs/privacy.md).

Central DP as aggregators for ``chain(...)`` (the server clips or the nodes do, the server
adds Gaussian noise, an accountant reports epsilon each round), ClientApp mods for
client-side clipping and local DP, the accountant's bridge to Google's dp-accounting,
sample-level DP-SGD on a node with Opacus, and secure aggregation (``SecAggPlus`` for the
strategy, ``secaggplus_mod`` for the nodes; docs/secure-aggregation.md). Opacus and
dp-accounting are imported only when used: ``pip install 'pollinate[privacy]'``.
"""

# dp: central DP pieces, client mods, the accountant
from ._accountant import Accountant as Accountant
from ._accountant import calibrate_noise_multiplier as calibrate_noise_multiplier
from ._accountant import epsilon as epsilon
from ._central import CLIP_NORM_KEY as CLIP_NORM_KEY
from ._central import SECAGG_COUNT_KEY as SECAGG_COUNT_KEY
from ._central import dp_adaptive_clip as dp_adaptive_clip
from ._central import dp_fixed_clip as dp_fixed_clip

# DP-SGD on the node (Opacus)
from ._dpsgd import DPSGD_STATE_KEY as DPSGD_STATE_KEY
from ._dpsgd import NODE_DELTA_KEY as NODE_DELTA_KEY
from ._dpsgd import NODE_EPSILON_KEY as NODE_EPSILON_KEY
from ._dpsgd import DpSgd as DpSgd
from ._mods import fixed_clipping_mod as fixed_clipping_mod
from ._mods import local_dp_mod as local_dp_mod

# secagg: SecAgg+ workflow and node mod
from ._secagg import SecAggError as SecAggError
from ._secagg import SecAggPlus as SecAggPlus
from ._secagg import SecAggPlusMod as SecAggPlusMod
from ._secagg import secaggplus_mod as secaggplus_mod

__all__ = [
    "Accountant",
    "CLIP_NORM_KEY",
    "DPSGD_STATE_KEY",
    "DpSgd",
    "NODE_DELTA_KEY",
    "NODE_EPSILON_KEY",
    "SECAGG_COUNT_KEY",
    "SecAggError",
    "SecAggPlus",
    "SecAggPlusMod",
    "calibrate_noise_multiplier",
    "dp_adaptive_clip",
    "dp_fixed_clip",
    "epsilon",
    "fixed_clipping_mod",
    "local_dp_mod",
    "secaggplus_mod",
]
