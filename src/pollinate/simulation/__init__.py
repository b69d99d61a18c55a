"""Simulation: run an app on virtual nodes in one machine, with pluggable backends."""

from ._backend import Backend as Backend
from ._backend import ClientAppSource as ClientAppSource
from ._backend import Task as Task
from ._backend import TaskResult as TaskResult
from ._backend import backend_names as backend_names
from ._backend import make_backend as make_backend
from ._backend import register_backend as register_backend
from ._grid import NodeConfigFn as NodeConfigFn
from ._grid import SimulationGrid as SimulationGrid
from ._grid import default_node_config as default_node_config
from ._inline import InlineBackend as InlineBackend
from ._population import Always as Always
from ._population import Availability as Availability
from ._population import Bandwidth as Bandwidth
from ._population import Bernoulli as Bernoulli
from ._population import Constant as Constant
from ._population import Device as Device
from ._population import Distribution as Distribution
from ._population import Diurnal as Diurnal
from ._population import LogNormal as LogNormal
from ._population import Pareto as Pareto
from ._population import Population as Population
from ._population import PopulationModel as PopulationModel
from ._population import Trace as Trace
from ._process import ProcessBackend as ProcessBackend
from ._ray import RayBackend as RayBackend
from ._run import run_simulation as run_simulation
from ._vectorized import VectorizedBackend as VectorizedBackend
from ._vectorized import VectorizedClientApp as VectorizedClientApp

__all__ = [
    "Always",
    "Availability",
    "Backend",
    "Bandwidth",
    "Bernoulli",
    "ClientAppSource",
    "Constant",
    "Device",
    "Distribution",
    "Diurnal",
    "InlineBackend",
    "LogNormal",
    "NodeConfigFn",
    "Pareto",
    "Population",
    "PopulationModel",
    "ProcessBackend",
    "RayBackend",
    "SimulationGrid",
    "Task",
    "TaskResult",
    "Trace",
    "VectorizedBackend",
    "VectorizedClientApp",
    "backend_names",
    "default_node_config",
    "make_backend",
    "register_backend",
    "run_simulation",
]
