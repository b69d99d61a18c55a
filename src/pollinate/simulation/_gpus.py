"""GPUs for simulated nodes: which ones this process sees, and how workers share them.

``client-resources.num-gpus`` is each node's share of a GPU: 0 (none, the default), a
fraction (0.25: four workers share one GPU) or a whole number (a worker holds that many).
A worker is given its GPUs as a ``CUDA_VISIBLE_DEVICES`` value, so it sees them alone and
its first one is ``cuda:0``. Nothing here runs unless num-gpus is above 0: CPU users pay
no probe and import no framework.

The probe: ``torch.cuda.device_count()`` when torch is installed (it honours
``CUDA_VISIBLE_DEVICES``, and it is what the app will use), else the ``GPU n:`` lines of
``nvidia-smi -L`` masked by ``CUDA_VISIBLE_DEVICES`` as CUDA reads it.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
from dataclasses import dataclass

from ..errors import ConfigError
from ._devices import CPU, GPU

__all__ = [
    "ENV",
    "GpuInventory",
    "count_visible_gpus",
    "find_gpus",
    "in_process_device",
    "masked_count",
    "num_gpus_problem",
    "share_phrase",
    "worker_gpus",
]

ENV = "CUDA_VISIBLE_DEVICES"
KEY = "client-resources.num-gpus"
_UUID = re.compile(r"(GPU|MIG)-[0-9A-Za-z-]+")
_INDEX = re.compile(r"[0-9]+")
MAX_SHARING = 256
"""At most this many workers share one GPU, however small the fraction."""
_PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class GpuInventory:
    """The GPUs this process may hand out, as ``CUDA_VISIBLE_DEVICES`` names them."""

    ids: tuple[str, ...]
    source: str
    """How they were counted (said in errors)."""
    mask: str | None = None
    """The ``CUDA_VISIBLE_DEVICES`` this process had, if set."""

    def found(self) -> str:
        """``"1 GPU (counted by nvidia-smi -L)"``: what was found and how, for messages."""
        count = len(self.ids)
        where = f"counted by {self.source}"
        if self.mask is not None:
            where += f", with {ENV}={self.mask!r}"
        return f"{count or 'no'} GPU{'' if count == 1 else 's'} ({where})"


def num_gpus_problem(value: object) -> str | None:
    """What is wrong with a num-gpus value, or None: 0, a fraction, or a whole number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{KEY} must be a number of GPUs per node, got {value!r}"
    if not math.isfinite(value) or value < 0:
        return f"{KEY} must be 0 or more GPUs per node, got {value}"
    if value > 1 and not float(value).is_integer():
        return (
            f"{KEY} = {value:g}: above 1 a node holds whole GPUs; use {math.floor(value)} "
            f"or {math.ceil(value)} (or a fraction below 1 to share one GPU)"
        )
    return None


def masked_count(mask: str | None, physical: int) -> int:
    """How many of ``physical`` GPUs CUDA shows a process whose ``CUDA_VISIBLE_DEVICES`` is mask.

    CUDA reads the list up to its first entry that is not a GPU index below ``physical``
    nor a ``GPU-``/``MIG-`` UUID, or that repeats one before it: an empty or garbled mask
    hides every GPU.
    """
    if mask is None:
        return max(0, physical)
    seen: set[str] = set()
    for entry in (e.strip() for e in mask.split(",")):
        index = _INDEX.fullmatch(entry) is not None
        valid = (index and int(entry) < physical) or _UUID.fullmatch(entry) is not None
        key = str(int(entry)) if index else entry
        if not valid or key in seen:
            break
        seen.add(key)
    return len(seen)


def count_visible_gpus() -> tuple[int, str]:
    """How many GPUs this process sees, and which probe said so (see the module's note)."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        return int(torch.cuda.device_count()), "torch.cuda.device_count()"
    try:
        listed = subprocess.run(
            ["nvidia-smi", "-L"],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0, "nvidia-smi -L (not found or not answering; torch is not installed)"
    physical = sum(line.startswith("GPU ") for line in listed.stdout.splitlines())
    return masked_count(os.environ.get(ENV), physical), "nvidia-smi -L"


def find_gpus() -> GpuInventory:
    """The GPUs this process may hand out: the first ones its ``CUDA_VISIBLE_DEVICES`` names.

    With the mask unset they are ``0..n-1``; with it set, CUDA's count of it says how many of
    its entries are real, in order, and those entries are what workers are given.
    """
    mask = os.environ.get(ENV)
    count, source = count_visible_gpus()
    if mask is None:
        ids = tuple(str(i) for i in range(count))
    else:
        ids = tuple(e.strip() for e in mask.split(","))[:count]
    return GpuInventory(ids, source, mask)


def worker_gpus(num_gpus: float, inventory: GpuInventory) -> tuple[str, ...]:
    """One ``CUDA_VISIBLE_DEVICES`` value per worker the GPUs allow at ``num_gpus`` each.

    A fraction packs ``floor(1 / num_gpus)`` workers (at most MAX_SHARING) on each GPU,
    spread round the GPUs
    (with two GPUs at 0.5: ``0, 1, 0, 1``) so that fewer workers still use every GPU; a
    whole number gives each worker its own run of that many GPUs. Asking for more than
    there is (or for any GPU where none is found) is one ConfigError that says what was
    found and how to fix it.
    """
    problem = num_gpus_problem(num_gpus)
    if problem is not None:
        raise ConfigError(problem)
    if not num_gpus > 0:
        raise ConfigError(f"{KEY} is 0: no GPU is to be handed out")
    gpus = inventory.ids
    if num_gpus > len(gpus):
        raise ConfigError(_too_many(num_gpus, inventory))
    if num_gpus < 1:
        per_gpu = min(MAX_SHARING, math.floor(1 / num_gpus + 1e-9))
        return tuple(gpu for _ in range(per_gpu) for gpu in gpus)
    size = int(num_gpus)
    return tuple(",".join(gpus[i : i + size]) for i in range(0, len(gpus) - size + 1, size))


def _too_many(num_gpus: float, inventory: GpuInventory) -> str:
    fix = (
        f"set {KEY} = 0 to run on the CPU"
        if not inventory.ids
        else f"lower {KEY} to at most {len(inventory.ids)}"
    )
    hint = (
        f", or change {ENV} (it hides every GPU it does not name)"
        if inventory.mask is not None
        else ""
    )
    return (
        f"{KEY} = {num_gpus:g} asks for {share_phrase(num_gpus)} per node, and this machine has "
        f"{inventory.found()}: {fix}{hint}"
    )


def share_phrase(num_gpus: float) -> str:
    """``"0.25 GPU"``, ``"2 GPUs"``: a node's share, in words."""
    return f"{num_gpus:g} GPU{'' if num_gpus <= 1 else 's'}"


def in_process_device(num_gpus: float) -> str:
    """The device of nodes run in this process: ``cuda:0`` with num-gpus above 0, else ``cpu``.

    Checked like a worker's share: asking for more GPUs than this process sees is a ConfigError.
    """
    problem = num_gpus_problem(num_gpus)
    if problem is not None:
        raise ConfigError(problem)
    if num_gpus == 0:
        return CPU
    worker_gpus(num_gpus, find_gpus())
    return GPU
