"""Conversions between an ML framework's model weights and an ``ArrayRecord``.

Each framework module follows the :class:`Framework` protocol: ``to_arrays(model)`` names
the model's weights and wraps them (sharing memory where the framework allows), and
``load_arrays(model, arrays)`` puts an ``ArrayRecord`` back, checking names and shapes, and
returns the model (a new pytree for JAX, whose arrays are immutable; the same object for
PyTorch and Keras). The modules import their framework only when used::

    from pollinate import frameworks

    arrays = frameworks.torch.to_arrays(model)
    frameworks.torch.load_arrays(model, msg.content.arrays())

A framework this package does not cover needs no adapter of its own: ``ArrayRecord`` takes
a dict of anything with ``__dlpack__`` or ``__array__`` (CPU tensors, JAX arrays).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Protocol, TypeVar

from ..records import ArrayRecord

if TYPE_CHECKING:
    from . import jax, keras, torch

__all__ = ["Framework", "jax", "keras", "torch"]

ModelT = TypeVar("ModelT")

_MODULES = ("jax", "keras", "torch")


class Framework(Protocol[ModelT]):
    """What every framework module provides: weights to an ``ArrayRecord`` and back."""

    def to_arrays(self, model: ModelT, /) -> ArrayRecord:
        """The model's weights by name, in the framework's own order."""
        ...

    def load_arrays(self, model: ModelT, arrays: ArrayRecord, /) -> ModelT:
        """``model`` with its weights replaced by ``arrays`` (same names and shapes)."""
        ...


def __getattr__(name: str) -> ModuleType:
    """Import a framework module on first use, so ``import pollinate`` never imports torch."""
    if name in _MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
