"""Experiment tracking: run observers that send each round to TensorBoard, MLflow or W&B.

Each tracker is a RunObserver (``run_simulation(..., observers=[tracker])``) whose library
is imported only when the tracker is made: ``import pollinate`` imports none of them, and a
missing one is a ConfigError naming the extra to install. A tracker that fails mid-run
logs one warning and stops; the run goes on (its own files are the source of truth).
"""

from ._base import Tracker as Tracker
from ._base import round_scalars as round_scalars
from ._make import TRACKER_OPTIONS as TRACKER_OPTIONS
from ._make import make_tracker as make_tracker
from ._make import require_library as require_library
from ._mlflow import MLflowTracker as MLflowTracker
from ._tensorboard import TensorBoardTracker as TensorBoardTracker
from ._wandb import WandbTracker as WandbTracker

__all__ = [
    "MLflowTracker",
    "TRACKER_OPTIONS",
    "TensorBoardTracker",
    "Tracker",
    "WandbTracker",
    "make_tracker",
    "require_library",
    "round_scalars",
]
