"""The ``pollinate`` command line: ``pollinate new`` writes an app, ``pollinate run`` runs it.

``main`` is the console script's entry point; ``python -m pollinate.cli`` runs it too.
"""

from ._main import main as main

__all__ = ["main"]
