"""Flower's ``flwr.server.workflow``: the legacy workflow and secure aggregation.

``DefaultWorkflow`` runs a ``LegacyContext``'s classic strategy on pollinate's round loop;
``SecAggPlusWorkflow`` and ``SecAggWorkflow`` as its ``fit_workflow`` run each round's fit
through ``pollinate.privacy.SecAggPlus`` (the clients' ClientApp needs ``secaggplus_mod``
from ``flwr.client.mod``). Flower's workflow internals (stages, ``WorkflowState``) are
pollinate's own and not mapped.
"""

from ._default import DefaultWorkflow as DefaultWorkflow
from ._secagg import SecAggPlusWorkflow as SecAggPlusWorkflow
from ._secagg import SecAggWorkflow as SecAggWorkflow

__all__ = ["DefaultWorkflow", "SecAggPlusWorkflow", "SecAggWorkflow"]
