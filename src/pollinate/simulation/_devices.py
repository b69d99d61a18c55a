"""Which device a simulated node's app should use: its context says, under ``device``.

A backend that gives a worker a GPU hides every other GPU from it (``CUDA_VISIBLE_DEVICES``),
so the worker's GPU is always ``cuda:0``; a worker without one runs on ``cpu``. The app reads
``context.node_config["device"]`` and needs no knowledge of how the machine is shared. A
node config that names a device itself (a ``node_config_fn`` placing node i on ``cuda:i``)
is left as it is: the user placed that node.
"""

from __future__ import annotations

import dataclasses

from ..context import Context

__all__ = ["CPU", "DEVICE_KEY", "GPU", "with_device"]

DEVICE_KEY = "device"
CPU = "cpu"
GPU = "cuda:0"


def with_device(context: Context, device: str) -> Context:
    """``context`` with ``node_config["device"]`` set to ``device``, unless it names one already."""
    if DEVICE_KEY in context.node_config:
        return context
    node_config = {**context.node_config, DEVICE_KEY: device}
    return dataclasses.replace(context, node_config=node_config)
