"""``run_simulation``: one call that runs an app on virtual nodes and returns its history."""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from ..client import ClientApp, ClientFn
from ..context import Context, UserConfig
from ..errors import ConfigError
from ..message import SERVER_NODE_ID
from ..records import ArrayRecord, RecordDict
from ..server import Result, RunObserver, ServerApp, run_server_app
from ..server._progress import RunProgress
from ..strategy import EvaluateFn, Strategy, one_server_app
from ._backend import Backend, ClientAppSource, make_backend
from ._clock import Population, PopulationBuilder
from ._grid import NodeConfigFn, SimulationGrid, default_node_config

__all__ = ["run_simulation"]

log = logging.getLogger("pollinate.simulation")

MAX_NODES = 1_000_000


def run_simulation(
    server_app: ServerApp | None = None,
    client_app: ClientApp | str | None = None,
    *,
    num_nodes: int,
    client_fn: ClientFn | None = None,
    strategy: Strategy | None = None,
    num_rounds: int | None = None,
    initial_arrays: ArrayRecord | None = None,
    evaluate_fn: EvaluateFn | None = None,
    backend: str | Backend = "inline",
    backend_options: Mapping[str, object] | None = None,
    run_config: UserConfig | None = None,
    node_config_fn: NodeConfigFn = default_node_config,
    app_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    checkpoints: bool = True,
    observers: Sequence[RunObserver] = (),
    run_id: int | None = None,
    verbose: bool = True,
    population: Population | PopulationBuilder | None = None,
) -> Result:
    """Run a federated app on ``num_nodes`` virtual nodes and return its history.

    Give the app either as a ``server_app`` and a ``client_app`` (the message API; the client
    app may be an import string ``"module:app"``, found in ``app_dir``, which the process
    backend prefers), or in the classic style as a ``client_fn`` plus a ``strategy`` and
    ``num_rounds`` (with optional ``initial_arrays``, else asked of a node, and a centralized
    ``evaluate_fn``).

    ``backend`` is ``"inline"`` (one process, messages by reference), ``"process"`` (a
    worker pool; ``backend_options`` such as ``num_workers``), ``"vectorized"`` or ``"ray"``
    (Ray actors; ``ray_address``, ``num_cpus``, ``num_gpus``, ``num_actors``);
    ``backend_options={"num_gpus": 0.25}`` puts the nodes on GPUs (docs/simulation.md, GPUs).
    With ``out_dir``, the run writes ``metrics.jsonl``, ``model.npz`` and (unless
    ``checkpoints=False``) the global model after every round under ``checkpoints/`` there.

    ``population`` (a ``PopulationModel``, built here for ``num_nodes``, or a population
    already built) puts the run on a simulated clock: node speeds, bandwidths, availability
    and dropouts decide when each reply arrives (docs/heterogeneity.md).

    With ``verbose`` (the default) each round is shown on stderr as it finishes (a table
    under a progress bar on a terminal, a line per round elsewhere), and a summary at the
    end; in a Jupyter notebook one table in the cell is updated in place and the run's
    curves follow the summary (docs/observability.md). ``verbose=False`` shows nothing.
    """
    if not 1 <= num_nodes <= MAX_NODES:
        raise ConfigError(f"num-nodes must be between 1 and {MAX_NODES:,}, got {num_nodes}")
    config = _checked_run_config(run_config or {})
    run_id = secrets.randbits(63) if run_id is None else run_id
    app_ref = client_app_source(client_app, client_fn, app_dir, run_id, num_nodes, config)
    server = one_server_app(server_app, strategy, num_rounds, initial_arrays, evaluate_fn)
    if not isinstance(backend, Backend):
        backend = make_backend(backend, **(backend_options or {}))
    built = population.build(num_nodes) if isinstance(population, PopulationBuilder) else population
    grid = SimulationGrid(backend, num_nodes, run_id, config, node_config_fn, population=built)
    context = Context(run_id, SERVER_NODE_ID, {}, config, RecordDict())
    starting = f"starting {num_nodes:,} node{'s' * (num_nodes != 1)}"
    with RunProgress(verbose, starting) as progress:
        try:
            backend.start(app_ref, num_nodes)
            result = run_server_app(
                server,
                grid,
                context,
                out_dir=out_dir,
                checkpoints=checkpoints,
                observers=[*observers, *progress.observers],
            )
        finally:
            backend.close()
            grid.close()
        return progress.finished(result)


def client_app_source(
    client_app: ClientApp | str | None,
    client_fn: ClientFn | None,
    app_dir: str | Path | None,
    run_id: int,
    num_nodes: int,
    run_config: UserConfig,
) -> ClientAppSource:
    """The ClientApp as ``run_simulation`` hands it to its backend, warm-up context included.

    A caller that launches the backend early (``Backend.launch``) passes it the same source.
    """
    app_ref = _client_app_ref(client_app, client_fn, app_dir)
    context = _warmup_context(run_id, num_nodes, _checked_run_config(run_config))
    return dataclasses.replace(app_ref, warmup_context=context)


def _warmup_context(run_id: int, num_nodes: int, run_config: UserConfig) -> Context:
    """What a ClientApp's warm-up gets: the run, its config and the federation's size."""
    node_config = {"num-partitions": num_nodes}
    read_only = MappingProxyType(dict(run_config))
    return Context(run_id, SERVER_NODE_ID, node_config, read_only, RecordDict())


def _checked_run_config(run_config: UserConfig) -> dict[str, bool | int | float | str]:
    """The run config, refusing values a Context cannot carry to every backend."""
    for key, value in run_config.items():
        if not isinstance(key, str) or not isinstance(value, (bool, int, float, str)):
            raise ConfigError(
                f"run_config[{key!r}] is {type(value).__name__}; run config values must be "
                "bool, int, float or str"
            )
    return dict(run_config)


def _client_app_ref(
    client_app: ClientApp | str | None, client_fn: ClientFn | None, app_dir: str | Path | None
) -> ClientAppSource:
    search_path = str(app_dir) if app_dir is not None else None
    if (client_app is None) == (client_fn is None):
        raise ConfigError(
            "give exactly one of client_app (a ClientApp or import string) or client_fn"
        )
    if isinstance(client_app, str):
        return ClientAppSource(spec=client_app, search_path=search_path)
    if client_app is not None:
        if not isinstance(client_app, ClientApp):
            raise ConfigError(f"client_app must be a ClientApp, got {type(client_app).__name__}")
        return ClientAppSource(app=client_app, search_path=search_path)
    assert client_fn is not None
    return ClientAppSource(app=ClientApp(client_fn=client_fn), search_path=search_path)
