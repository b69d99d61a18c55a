"""Isolated vs federated: what collaboration buys each party, in numbers and pictures.

``run_comparison`` trains the federated model and one isolated model per node with the same
local budget, and scores each on the app's test set through the app's ``predict`` hook;
``write_comparison`` writes the table (Markdown, JSON), curves and confusion matrices.
``pollinate compare APP_DIR`` does both. See docs/compare.md for the two hooks an app adds.
"""

from ._files import ComparisonFiles as ComparisonFiles
from ._files import require_plotting as require_plotting
from ._files import write_comparison as write_comparison
from ._hooks import LABEL_COUNTS as LABEL_COUNTS
from ._hooks import PredictFn as PredictFn
from ._hooks import Predictions as Predictions
from ._hooks import label_counts as label_counts
from ._runs import run_comparison as run_comparison
from ._table import Cell as Cell
from ._table import Comparison as Comparison
from ._table import ModelRun as ModelRun
from ._table import RoundScore as RoundScore
from ._table import Table as Table

__all__ = [
    "Cell",
    "Comparison",
    "ComparisonFiles",
    "LABEL_COUNTS",
    "ModelRun",
    "PredictFn",
    "Predictions",
    "RoundScore",
    "Table",
    "label_counts",
    "require_plotting",
    "run_comparison",
    "write_comparison",
]
