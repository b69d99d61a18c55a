"""Privacy: differential privacy pieces and secure aggregation (SecAgg+) on the main API.

docs/secure-aggregation.md (SecAgg+).
"""

# secagg: SecAgg+ workflow and node mod
from ._secagg import SecAggError as SecAggError
from ._secagg import SecAggPlus as SecAggPlus
from ._secagg import secaggplus_mod as secaggplus_mod

__all__ = [
    # secagg
    "SecAggError",
    "SecAggPlus",
    "secaggplus_mod",
]
