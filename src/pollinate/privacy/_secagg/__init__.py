"""SecAgg+ (Bell et al. 2020): the server workflow, the node's mod, and their primitives."""

from ._errors import SecAggError as SecAggError
from ._mod import SecAggPlusMod as SecAggPlusMod
from ._mod import secaggplus_mod as secaggplus_mod
from ._workflow import SecAggPlus as SecAggPlus

__all__ = ["SecAggError", "SecAggPlus", "SecAggPlusMod", "secaggplus_mod"]
