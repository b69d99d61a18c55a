"""Flower's ``flwr.simulation``: ``start_simulation`` and ``run_simulation`` on pollinate's.

Maps: ``client_fn`` (``(context)`` or legacy ``(cid: str)``, cid "0".."N-1" = the partition
id) -> a ClientApp through ``client_fn_handlers``; ``num_clients`` -> ``num_nodes``;
``config`` -> ``num_rounds`` and the round timeout; ``strategy`` -> the server app; the
result -> ``History``. The nodes run inline (one process, no copies) unless ``backend``
names another of pollinate's backends (``"process"``, ``"ray"``). ``client_resources``
becomes that backend's resources: ``num_gpus`` each node's share of a GPU (every backend),
``num_cpus`` a process worker's threads or a Ray actor's CPUs; ``ray_init_args["address"]``
is the ray backend's ``ray_address``. Ray's other arguments (``keep_initialised``,
``actor_type``, ``actor_kwargs``, ``actor_scheduling``, other ``ray_init_args``) are accepted
and said once to be ignored. ``run_simulation(server_app, client_app, num_supernodes)``
(Flower 1.8+) passes the apps to ``pollinate.run_simulation`` as they are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ....client import ClientApp
from ....context import UserConfig
from ....errors import ConfigError
from ....server import ServerApp
from ....simulation import run_simulation as pollinate_run_simulation
from ....strategy import Strategy as CoreStrategy
from ..client._adapter import FlowerClientFn, flower_client_app
from ..common.logger import warn_once
from ..server.app import _refuse_custom, default_strategy, strategy_server_app
from ..server.history import History, history_from_result
from ..server.server_config import ServerConfig, server_config

__all__ = ["run_simulation", "start_simulation"]


def start_simulation(
    *,
    client_fn: Callable[..., Any],
    num_clients: int | None = None,
    clients_ids: list[str] | None = None,
    client_resources: Mapping[str, float] | None = None,
    server: Any = None,
    config: ServerConfig | Mapping[str, Any] | None = None,
    strategy: CoreStrategy | None = None,
    client_manager: Any = None,
    ray_init_args: Mapping[str, Any] | None = None,
    keep_initialised: bool | None = False,
    actor_type: Any = None,
    actor_kwargs: Mapping[str, Any] | None = None,
    actor_scheduling: str | Any = "DEFAULT",
    backend: str = "inline",
    backend_options: Mapping[str, object] | None = None,
) -> History:
    """Run ``strategy`` (default FedAvg) on ``num_clients`` virtual clients; return its History.

    ``clients_ids`` names the clients instead (``client_fn(cid)`` gets those). ``backend``
    and ``backend_options`` are pollinate's (``"process"`` runs the clients in workers,
    ``"ray"`` on Ray actors); ``backend_options`` wins over what ``client_resources`` and
    ``ray_init_args`` say.
    """
    _refuse_custom(server, client_manager)
    options = {
        **_resources(backend, client_resources),
        **_ray_init(backend, ray_init_args),
        **(backend_options or {}),
    }
    _ray_ignored(
        keep_initialised=bool(keep_initialised),
        actor_type=actor_type is not None,
        actor_kwargs=actor_kwargs is not None,
        actor_scheduling=actor_scheduling != "DEFAULT",
    )
    ids = _client_ids(num_clients, clients_ids)
    app = flower_client_app(FlowerClientFn(client_fn))
    result = pollinate_run_simulation(
        strategy_server_app(default_strategy(strategy), server_config(config)),
        app,
        num_nodes=len(ids) if ids else int(num_clients or 0),
        node_config_fn=_NodeConfig(ids),
        backend=backend,
        backend_options=options,
    )
    return history_from_result(result)


def run_simulation(
    server_app: ServerApp,
    client_app: ClientApp,
    num_supernodes: int,
    backend_name: str = "ray",
    backend_config: Mapping[str, Any] | None = None,
    enable_tf_gpu_growth: bool = False,
    verbose_logging: bool = False,
) -> None:
    """Run a ServerApp and a ClientApp on ``num_supernodes`` virtual nodes (inline, no Ray).

    ``backend_config["client_resources"]["num_gpus"]`` puts the nodes on the GPU, as
    ``start_simulation``'s ``client_resources`` does; ``backend_name``, the rest of
    ``backend_config`` and ``enable_tf_gpu_growth`` are Ray's: said once to be ignored.
    Flower returns nothing; the run's history is what the ServerApp keeps.
    """
    if not isinstance(server_app, ServerApp) or not isinstance(client_app, ClientApp):
        raise ConfigError(
            f"run_simulation takes a ServerApp and a ClientApp, got {type(server_app).__name__} "
            f"and {type(client_app).__name__}"
        )
    config = dict(backend_config or {})
    options = _resources("inline", config.pop("client_resources", None))
    _ray_ignored(
        backend_name=backend_name != "ray",
        backend_config=bool(config),
        enable_tf_gpu_growth=enable_tf_gpu_growth,
    )
    pollinate_run_simulation(
        server_app, client_app, num_nodes=num_supernodes, backend_options=options
    )


class _NodeConfig:
    """Each node's partition, and its Flower cid when ``clients_ids`` names them."""

    __slots__ = ("ids",)

    def __init__(self, ids: list[str] | None) -> None:
        self.ids = ids

    def __call__(self, partition_id: int, num_partitions: int) -> UserConfig:
        config: dict[str, bool | int | float | str] = {
            "partition-id": partition_id,
            "num-partitions": num_partitions,
        }
        if self.ids is not None:
            config["cid"] = self.ids[partition_id]
        return config


def _client_ids(num_clients: int | None, clients_ids: list[str] | None) -> list[str] | None:
    if (num_clients is None) == (clients_ids is None):
        raise ConfigError("give start_simulation num_clients or clients_ids (exactly one)")
    if clients_ids is None:
        return None
    if not clients_ids or len(set(clients_ids)) != len(clients_ids):
        raise ConfigError("clients_ids must be a non-empty list of distinct ids")
    return [str(cid) for cid in clients_ids]


def _resources(backend: str, client_resources: Mapping[str, float] | None) -> dict[str, object]:
    """Flower's per-client resources as ``backend``'s options (what it has no use for is said)."""
    given = dict(client_resources or {})
    options: dict[str, object] = {}
    num_gpus = _amount(given.pop("num_gpus", 0.0), "num_gpus")
    if num_gpus:
        options["num_gpus"] = num_gpus
    num_cpus = given.pop("num_cpus", None)
    if num_cpus is not None:
        num_cpus = _amount(num_cpus, "num_cpus")
        if backend == "ray":
            options["num_cpus"] = num_cpus
        elif backend == "process":
            options["threads_per_worker"] = max(1, math.ceil(num_cpus))
        else:
            warn_once(
                "resource-num_cpus",
                f"client_resources['num_cpus'] is ignored on the {backend} backend: its "
                "nodes run one at a time in this process",
            )
    for name in given:
        warn_once(
            f"resource-{name}",
            f"client_resources[{name!r}] is ignored: pollinate's backends take num_cpus and "
            "num_gpus",
        )
    return options


def _amount(value: object, name: str) -> float:
    """A resource amount as a float: 0 or more and finite, else one ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"client_resources[{name!r}] must be a number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"client_resources[{name!r}] must be 0 or more, got {value}")
    return float(value)


def _ray_init(backend: str, ray_init_args: Mapping[str, Any] | None) -> dict[str, object]:
    """``ray_init_args["address"]`` as the ray backend's ``ray_address``; the rest is said."""
    given = dict(ray_init_args or {})
    options: dict[str, object] = {}
    if backend == "ray" and "address" in given:
        options["ray_address"] = str(given.pop("address") or "")
    if given:
        _ray_ignored(ray_init_args=True)
    return options


def _ray_ignored(**given: bool) -> None:
    for name, was_given in given.items():
        if was_given:
            warn_once(
                f"ray-{name}",
                f"{name} is ignored: pollinate's backends do not use it (backend='ray' takes "
                "client_resources and ray_init_args['address']; the default inline backend "
                "runs the clients in this process)",
            )
