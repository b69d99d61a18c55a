"""Flower's ``flwr.common.config`` helpers that apps use on ``context.run_config``.

A run config is flat (``"model.lora.r" = 8`` in pyproject.toml's dotted tables);
``unflatten_dict`` nests it for tools that want a tree (Hydra/OmegaConf, as Flower's LLM
examples do), and ``flatten_dict`` goes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ....errors import ConfigError

__all__ = ["flatten_dict", "unflatten_dict"]


def unflatten_dict(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "c": 2}`` as ``{"a": {"b": 1}, "c": 2}``."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"unflatten_dict: {key!r} nests under {part!r}, a value")
            node = child
        node[leaf] = value
    return nested


def flatten_dict(nested: Mapping[str, Any], parent_key: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``: the inverse of ``unflatten_dict``."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{parent_key}.{key}" if parent_key else key
        if isinstance(value, Mapping):
            flat.update(flatten_dict(value, name))
        else:
            flat[name] = value
    return flat
