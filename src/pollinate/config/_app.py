"""An app's ``pyproject.toml``: its components, its run config and its federations.

::

    [tool.pollinate.app.components]
    serverapp = "myapp.server_app:app"      # import strings, relative to the app's folder
    clientapp = "myapp.client_app:app"
    predict = "myapp.task:predict"          # optional: what `pollinate compare` scores with

    [tool.pollinate.app.config]             # the run config: bool, int, float or string
    num-server-rounds = 3

    [tool.pollinate.federations]
    default = "local-simulation"

    [tool.pollinate.federations.local-simulation]
    num-nodes = 10                          # required
    backend = "inline"                      # or "process", "vectorized", "ray"
    num-workers = 4                         # process backend (workers) or ray (actors) only
    ray-address = "auto"                    # ray backend only: "" starts a local Ray
    client-resources = { num-cpus = 1, num-gpus = 0.0 }   # num-gpus: 0.25 = 4 share a GPU

    [tool.pollinate.federations.local-simulation.population]   # optional: a simulated clock
    seed = 0                                # the population model's keys (docs/heterogeneity.md)

    [tool.pollinate.federations.prod]       # a deployment: it has an address
    address = "link.example:9400"           # where `pollinate link` listens
    root-cert = "certs/ca.pem"              # or insecure = true; paths are relative to the app
    cert = "certs/operator1.pem"            # optional: the operator's client certificate
    key = "certs/operator1.key"             # and its key (without cert: a signing key)
    min-nodes = 3                           # nodes the run waits for (default 1)
    wait-s = 600                            # for this long (default 300)

    [tool.pollinate.app.track]              # optional: experiment trackers (config/_track.py)
    tensorboard = true
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..context import UserConfigValue
from ..errors import ConfigError
from ..simulation import backend_names
from ..simulation._gpus import num_gpus_problem, share_phrase
from ._flower import flower_federation_key, has_flower_tables, translate
from ._overrides import (
    Override,
    flatten,
    format_value,
    parse_toml,
    type_phrase,
    typed_value,
    unknown_key,
)
from ._track import TRACK_TABLE, track_table

__all__ = [
    "DEFAULT_FEDERATION",
    "AppConfig",
    "Deployment",
    "Federation",
    "is_deployment",
    "load_app_config",
    "resolve_deployment",
    "resolve_federation",
    "resolve_run_config",
]

PYPROJECT = "pyproject.toml"
DEFAULT_FEDERATION = "local-simulation"
COMPONENTS_TABLE = "tool.pollinate.app.components"
CONFIG_TABLE = "tool.pollinate.app.config"
FEDERATIONS_TABLE = "tool.pollinate.federations"
POPULATION = "population"
"""A simulation federation's table for its population model, handed on whole."""

FEDERATION_KEYS: dict[str, type] = {
    "num-nodes": int,
    "backend": str,
    "num-workers": int,
    "client-resources.num-cpus": int,
    "client-resources.num-gpus": float,
    "memory-budget-mb": float,
    "ray-address": str,
}
"""Every key a simulation federation may set (nested tables as dotted keys), and its type."""

DEPLOYMENT_KEYS: dict[str, type] = {
    "address": str,
    "root-cert": str,
    "insecure": bool,
    "key": str,
    "cert": str,
    "min-nodes": int,
    "wait-s": float,
}
"""Every key a deployment federation (one with an ``address``) may set, and its type."""


@dataclass(frozen=True, slots=True)
class AppConfig:
    """What an app's ``pyproject.toml`` says under ``[tool.pollinate]``."""

    app_dir: Path
    name: str
    serverapp: str
    clientapp: str
    run_config: Mapping[str, UserConfigValue] = field(default_factory=dict)
    federations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    default_federation: str = DEFAULT_FEDERATION
    predict: str | None = None
    """The ``predict`` hook ``pollinate compare`` scores models with, if the app has one."""
    notes: tuple[str, ...] = ()
    """What a person should know about how the file was read (a Flower app's, say)."""
    track: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The ``[tool.pollinate.app.track]`` table, checked: each tracker's options."""

    @property
    def pyproject(self) -> Path:
        """The file this config was read from."""
        return self.app_dir / PYPROJECT


@dataclass(frozen=True, slots=True)
class Federation:
    """A simulation federation: how many virtual nodes, and which backend runs them."""

    name: str
    num_nodes: int
    backend: str = "inline"
    num_workers: int | None = None
    num_cpus: int | None = None
    num_gpus: float = 0.0
    memory_budget_mb: float | None = None
    ray_address: str | None = None
    population: Mapping[str, Any] | None = None
    """The ``[...population]`` table as written (None: no simulated clock)."""

    def backend_options(self) -> dict[str, object]:
        """The keyword arguments of the backend's class."""
        if self.backend == "ray":
            return self._ray_options()
        options: dict[str, object] = {"num_gpus": self.num_gpus} if self.num_gpus else {}
        if self.backend == "vectorized" and self.memory_budget_mb is not None:
            options["memory_budget_mb"] = self.memory_budget_mb
        if self.backend != "process":
            return options
        if self.num_workers is not None:
            options["num_workers"] = self.num_workers
        if self.num_cpus is not None:
            options["threads_per_worker"] = self.num_cpus
        return options

    def _ray_options(self) -> dict[str, object]:
        """The ray backend's options: its cluster, its actors and each one's resources."""
        options: dict[str, object] = {"num_gpus": self.num_gpus}
        if self.ray_address is not None:
            options["ray_address"] = self.ray_address
        if self.num_workers is not None:
            options["num_actors"] = self.num_workers
        if self.num_cpus is not None:
            options["num_cpus"] = self.num_cpus
        return options

    def describe(self) -> str:
        """``"10 nodes, process backend, 4 workers"``: the federation in a few words."""
        parts = [_counted(self.num_nodes, "node"), f"{self.backend} backend"]
        if self.num_workers is not None:
            parts.append(_counted(self.num_workers, "worker"))
        if self.num_cpus is not None:
            parts.append(f"{_counted(self.num_cpus, 'CPU')} per node")
        if self.num_gpus:
            parts.append(f"{share_phrase(self.num_gpus)} per node")
        if self.memory_budget_mb is not None:
            parts.append(f"{self.memory_budget_mb:g} MB memory budget")
        if self.ray_address:
            parts.append(f"Ray at {self.ray_address}")
        if self.population is not None:
            parts.append("a simulated population")
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The federation as ``run.json`` records it, in pyproject.toml's spelling."""
        recorded: dict[str, Any] = {
            "name": self.name,
            "num-nodes": self.num_nodes,
            "backend": self.backend,
            "num-workers": self.num_workers,
            "client-resources": {"num-cpus": self.num_cpus, "num-gpus": self.num_gpus},
        }
        if self.memory_budget_mb is not None:
            recorded["memory-budget-mb"] = self.memory_budget_mb
        if self.ray_address is not None:
            recorded["ray-address"] = self.ray_address
        if self.population is not None:
            recorded[POPULATION] = dict(self.population)
        return recorded


@dataclass(frozen=True, slots=True)
class Deployment:
    """A deployed federation: the link's address, how to trust it, and who the operator is.

    ``cert`` is the operator's client certificate for a link with mutual TLS, ``key`` its
    private key; without ``cert``, ``key`` is an operator key that signs each request.
    """

    name: str
    address: str
    root_cert: Path | None = None
    insecure: bool = False
    key: Path | None = None
    cert: Path | None = None
    min_nodes: int = 1
    wait_s: float = 300.0


def load_app_config(app_dir: Path) -> AppConfig:
    """Read ``app_dir/pyproject.toml``; every missing or malformed part is a ConfigError."""
    path = app_dir / PYPROJECT
    if app_dir.is_file():
        raise ConfigError(
            f"{str(app_dir)!r} is a file: give the app's folder, the one that holds it"
        )
    if not app_dir.is_dir():
        raise ConfigError(f"app directory {str(app_dir)!r} does not exist")
    if not path.is_file():
        raise ConfigError(
            f"no {PYPROJECT} in {str(app_dir)!r}: give the folder of a pollinate app "
            "(pollinate run APP_DIR), or create one with: pollinate new NAME"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    document = parse_toml(text, str(path))
    document, notes = _pollinate_tables(document, path)
    components = _table(document, COMPONENTS_TABLE, path)
    if components is None:
        raise ConfigError(
            f"{path} has no [{COMPONENTS_TABLE}] table; add one that names the apps:\n\n"
            f"[{COMPONENTS_TABLE}]\n"
            'serverapp = "mypackage.server_app:app"\n'
            'clientapp = "mypackage.client_app:app"'
        )
    federations = _table(document, FEDERATIONS_TABLE, path) or {}
    return AppConfig(
        app_dir=app_dir,
        name=_project_name(document, app_dir),
        serverapp=_component(components, "serverapp", path),
        clientapp=_component(components, "clientapp", path),
        run_config=_run_config(_table(document, CONFIG_TABLE, path) or {}, path),
        federations={k: v for k, v in federations.items() if k != "default"},
        default_federation=_default_federation(federations, path),
        predict=_optional_component(components, "predict", path),
        notes=notes,
        track=track_table(_table(document, TRACK_TABLE, path) or {}, str(path)),
    )


def _pollinate_tables(
    document: dict[str, Any], path: Path
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The document with ``[tool.pollinate]`` tables, read from ``[tool.flwr]`` if need be.

    A Flower app (``flwr new``) has only ``[tool.flwr.*]``: it is read as pollinate's
    spelling, with notes saying so. With both, pollinate's tables win.
    """
    if not has_flower_tables(document):
        return document, ()
    if _table(document, COMPONENTS_TABLE, path) is not None:
        note = (
            f"{path.name} has both [tool.pollinate] and [tool.flwr] tables: pollinate's are "
            "used and [tool.flwr] is ignored"
        )
        return document, (note,)
    translation = translate(document, path)
    tool = {**document["tool"], "pollinate": translation.tables}
    return {**document, "tool": tool}, translation.notes


def _optional_component(components: Mapping[str, Any], key: str, path: Path) -> str | None:
    value = components.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(
            f"[{COMPONENTS_TABLE}] {key} in {path} must be an import string like "
            f'"mypackage.task:{key}", got {format_value(value)}'
        )
    return value


def _table(document: Mapping[str, Any], dotted: str, path: Path) -> dict[str, Any] | None:
    """The table at ``dotted`` (e.g. ``tool.pollinate.app``), or None when it is absent."""
    node: Any = document
    for depth, part in enumerate(dotted.split(".")):
        node = node.get(part)
        if node is None:
            return None
        if not isinstance(node, dict):
            where = ".".join(dotted.split(".")[: depth + 1])
            raise ConfigError(f"{path}: [{where}] must be a table, got {format_value(node)}")
    table: dict[str, Any] = node
    return table


def _project_name(document: Mapping[str, Any], app_dir: Path) -> str:
    project = document.get("project")
    name = project.get("name") if isinstance(project, dict) else None
    return name if isinstance(name, str) else app_dir.resolve().name


def _component(components: Mapping[str, Any], key: str, path: Path) -> str:
    kind = "ServerApp" if key == "serverapp" else "ClientApp"
    value = components.get(key)
    if value is None:
        raise ConfigError(
            f"[{COMPONENTS_TABLE}] in {path} has no {key!r}: set it to the {kind}'s import "
            f'string, e.g. {key} = "mypackage.{key[:6]}_app:app"'
        )
    if not isinstance(value, str):
        raise ConfigError(
            f"[{COMPONENTS_TABLE}] {key} in {path} must be a string like "
            f'"mypackage.{key[:6]}_app:app", got {format_value(value)}'
        )
    return value


def _run_config(table: Mapping[str, Any], path: Path) -> dict[str, UserConfigValue]:
    config = {}
    for key, value in flatten(table):
        if not isinstance(value, (bool, int, float, str)):
            raise ConfigError(
                f"[{CONFIG_TABLE}] {key} in {path}: a run config value must be a bool, int, "
                f"float or string, got {format_value(value)}"
            )
        config[key] = value
    return config


def _default_federation(federations: Mapping[str, Any], path: Path) -> str:
    default = federations.get("default", DEFAULT_FEDERATION)
    if not isinstance(default, str):
        raise ConfigError(
            f"[{FEDERATIONS_TABLE}] default in {path} must be a federation's name, "
            f"got {format_value(default)}"
        )
    return default


def resolve_run_config(app: AppConfig, overrides: Iterable[Override]) -> dict[str, UserConfigValue]:
    """The app's run config with ``--run-config`` overrides, each typed like its default."""
    config = dict(app.run_config)
    for override in overrides:
        if override.key not in app.run_config:
            raise unknown_key(
                "--run-config",
                override.key,
                app.run_config,
                f"Add new keys to [{CONFIG_TABLE}] in {app.pyproject} first.",
            )
        default = app.run_config[override.key]
        problem = f"--run-config: {override.key!r} (default {format_value(default)})"
        config[override.key] = typed_value(override, type(default), problem)
    return config


def is_deployment(app: AppConfig, name: str | None) -> bool:
    """Whether federation ``name`` (else the app's default) is a deployment (has an address)."""
    table = app.federations.get(name or app.default_federation)
    return isinstance(table, dict) and "address" in table


def resolve_federation(
    app: AppConfig, name: str | None, overrides: Iterable[Override]
) -> Federation:
    """The federation ``name`` (else the app's default) with ``--federation-config`` applied."""
    name, values = _federation_table(app, name, overrides, FEDERATION_KEYS)
    if "address" in app.federations[name]:
        raise ConfigError(
            f"federation {name!r} in {app.pyproject} is a deployment (it has an address), and "
            "this command runs simulations only: choose a simulation federation (num-nodes = 10)"
        )
    return _federation(name, values)


def resolve_deployment(
    app: AppConfig, name: str | None, overrides: Iterable[Override] = ()
) -> Deployment:
    """The deployed federation ``name`` (else the app's default), its paths made absolute."""
    chosen = name or app.default_federation
    if chosen in app.federations and not is_deployment(app, chosen):
        deployed = sorted(n for n in app.federations if is_deployment(app, n))
        hint = (
            f"choose one with --federation ({', '.join(deployed)})"
            if deployed
            else f'define one in {app.pyproject} with address = "HOST:PORT", or use --link'
        )
        raise ConfigError(
            f"federation {chosen!r} is a simulation, not a deployed federation (one with an "
            f"address): {hint}"
        )
    name, values = _federation_table(app, name, overrides, DEPLOYMENT_KEYS)
    where = f"federation {name!r} in {app.pyproject}"
    if "address" not in values:
        raise ConfigError(f'{where} has no address: set address = "HOST:PORT" of the link')
    root_cert = values.get("root-cert")
    insecure = bool(values.get("insecure", False))
    if insecure == (root_cert is not None):
        raise ConfigError(
            f'{where} needs root-cert = "certs/ca.pem" (the CA certificate that signed the '
            "link's) for TLS, or insecure = true for plain text on a trusted network"
        )
    key, cert = values.get("key"), values.get("cert")
    if cert is not None and (key is None or insecure):
        raise ConfigError(
            f'{where}: cert goes with key = "certs/operator1.key" (its private key) and '
            "root-cert (mutual TLS)"
        )
    deployment = Deployment(
        name=name,
        address=values["address"],
        root_cert=None if root_cert is None else app.app_dir / root_cert,
        insecure=insecure,
        key=None if key is None else app.app_dir / key,
        cert=None if cert is None else app.app_dir / cert,
        min_nodes=values.get("min-nodes", 1),
        wait_s=values.get("wait-s", 300.0),
    )
    if deployment.min_nodes < 1 or deployment.wait_s <= 0:
        raise ConfigError(f"{where}: min-nodes must be at least 1 and wait-s above 0")
    return deployment


def _federation_table(
    app: AppConfig, name: str | None, overrides: Iterable[Override], keys: Mapping[str, type]
) -> tuple[str, dict[str, Any]]:
    """The federation's name and values, typed and checked against ``keys``, overrides applied."""
    name = name or app.default_federation
    if name not in app.federations:
        known = ", ".join(sorted(app.federations)) or "none"
        raise ConfigError(
            f"unknown federation {name!r}; {app.pyproject} defines: {known}. Define it as "
            f"[{FEDERATIONS_TABLE}.{name}] with num-nodes = 10 (a simulation), or with "
            'address = "HOST:PORT" (a deployment)'
        )
    if keys is FEDERATION_KEYS and "address" in app.federations[name]:
        return name, {}
    where = f"[{FEDERATIONS_TABLE}.{name}]"
    table = dict(app.federations[name])
    population = table.pop(POPULATION, None) if keys is FEDERATION_KEYS else None
    values = _federation_values(table, where, app.pyproject, keys)
    if population is not None:
        if not isinstance(population, Mapping):
            raise ConfigError(
                f"{where} population in {app.pyproject} must be a table "
                f"([{FEDERATIONS_TABLE}.{name}.population]), got {format_value(population)}"
            )
        values[POPULATION] = dict(population)
    for override in overrides:
        flower = flower_federation_key(override.key, override.text)
        if flower is not None:
            raise flower
        if override.key.split(".")[0] == POPULATION and keys is FEDERATION_KEYS:
            raise ConfigError(
                f"--federation-config cannot set the population model ({override.key}): set "
                f"it in [{FEDERATIONS_TABLE}.{name}.population] in {app.pyproject}"
            )
        if override.key not in keys:
            raise unknown_key(
                "--federation-config",
                override.key,
                keys,
                "Nested keys are dotted: client-resources.num-cpus=2.",
            )
        problem = f"--federation-config: {override.key!r}"
        values[override.key] = typed_value(override, keys[override.key], problem)
    return name, values


def _federation_values(
    table: Mapping[str, Any], where: str, path: Path, keys: Mapping[str, type]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in flatten(table):
        if key not in keys:
            known = [*keys, POPULATION] if keys is FEDERATION_KEYS else list(keys)
            raise unknown_key(f"{where} in {path}", key, known, "Remove or rename it.")
        expected = keys[key]
        if not _has_type(value, expected):
            raise ConfigError(
                f"{where} {key} in {path} must be {type_phrase(expected)}, "
                f"got {format_value(value)}"
            )
        values[key] = float(value) if expected is float else value
    return values


def _has_type(value: object, expected: type) -> bool:
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


def _federation(name: str, values: Mapping[str, Any]) -> Federation:
    where = f"federation {name!r}:"
    if "num-nodes" not in values:
        raise ConfigError(
            f"federation {name!r} has no num-nodes: say how many virtual nodes it has "
            "(num-nodes = 10)"
        )
    federation = Federation(
        name=name,
        num_nodes=values["num-nodes"],
        backend=values.get("backend", "inline"),
        num_workers=values.get("num-workers"),
        num_cpus=values.get("client-resources.num-cpus"),
        num_gpus=values.get("client-resources.num-gpus", 0.0),
        memory_budget_mb=values.get("memory-budget-mb"),
        ray_address=values.get("ray-address"),
        population=values.get(POPULATION),
    )
    _check(federation, where)
    return federation


def _check(federation: Federation, where: str) -> None:
    """Ranges and combinations the types alone do not catch."""
    if federation.num_nodes < 1:
        raise ConfigError(f"{where} num-nodes must be at least 1, got {federation.num_nodes}")
    if federation.backend not in backend_names():
        raise ConfigError(
            f"{where} backend must be one of {', '.join(map(repr, backend_names()))}, "
            f"got {federation.backend!r}"
        )
    if federation.ray_address is not None and federation.backend != "ray":
        raise ConfigError(
            f'{where} ray-address applies to backend = "ray" only; set that backend or drop '
            "ray-address"
        )
    if federation.num_workers is not None:
        if federation.backend not in ("process", "ray"):
            raise ConfigError(
                f'{where} num-workers applies to backend = "process" (workers) or "ray" '
                "(actors) only; set one of those backends or drop num-workers"
            )
        if federation.num_workers < 1:
            raise ConfigError(
                f"{where} num-workers must be at least 1, got {federation.num_workers}"
            )
    if federation.memory_budget_mb is not None:
        if federation.backend != "vectorized":
            raise ConfigError(
                f'{where} memory-budget-mb applies to backend = "vectorized" only; set that '
                "backend or drop memory-budget-mb"
            )
        if not (math.isfinite(federation.memory_budget_mb) and federation.memory_budget_mb >= 1):
            raise ConfigError(
                f"{where} memory-budget-mb must be a number of MB, at least 1, got "
                f"{federation.memory_budget_mb:g}"
            )
    if federation.num_cpus is not None and federation.num_cpus < 1:
        raise ConfigError(
            f"{where} client-resources.num-cpus must be at least 1, got {federation.num_cpus}"
        )
    problem = num_gpus_problem(federation.num_gpus)
    if problem is not None:
        raise ConfigError(f"{where} {problem}")


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
