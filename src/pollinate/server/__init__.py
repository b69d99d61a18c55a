"""The server side: ServerApp, the Grid interface, run results and observers."""

from ._app import ServerApp as ServerApp
from ._app import ServerMain as ServerMain
from ._grid import Grid as Grid
from ._grid import check_reply as check_reply
from ._history import Failure as Failure
from ._history import PhaseResult as PhaseResult
from ._history import Result as Result
from ._history import RoundRecord as RoundRecord
from ._history import load_arrays as load_arrays
from ._history import save_arrays as save_arrays
from ._observer import FileRecorder as FileRecorder
from ._observer import LogReporter as LogReporter
from ._observer import RunObserver as RunObserver
from ._resume import ResumePoint as ResumePoint
from ._runner import run_server_app as run_server_app

__all__ = [
    "Failure",
    "FileRecorder",
    "Grid",
    "LogReporter",
    "PhaseResult",
    "Result",
    "ResumePoint",
    "RoundRecord",
    "RunObserver",
    "ServerApp",
    "ServerMain",
    "check_reply",
    "load_arrays",
    "run_server_app",
    "save_arrays",
]
