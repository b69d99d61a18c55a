"""pollinate's errors in Flower's words, for the errors Flower code meets through compat.

The core's messages name pollinate's settings and mods (``min_train_nodes``,
``fixed_clipping_mod``); a Flower user set ``min_fit_clients`` and listed
``fixedclipping_mod``. ``in_flower_words`` rewrites an error raised under the compat layer,
so the core keeps its own messages for native users.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from ...errors import ConfigError, RoundError

__all__ = ["flower_words", "in_flower_words"]

_WORDS = {
    "min_train_nodes": "min_fit_clients",
    "min_evaluate_nodes": "min_evaluate_clients",
    "min_available_nodes": "min_available_clients",
    "fraction_train": "fraction_fit",
    "fixed_clipping_mod": "fixedclipping_mod",
    "local_dp_mod": "LocalDpMod",
    "from pollinate.privacy": "from pollinate.compat.flwr.client.mod",
    "num-nodes": "num_supernodes",
}
_PATTERN = re.compile("|".join(rf"(?<![\w.]){re.escape(word)}(?!\w)" for word in _WORDS))


def flower_words(text: str) -> str:
    """``text`` with pollinate's names of settings and mods replaced by Flower's."""
    return _PATTERN.sub(lambda match: _WORDS[match.group(0)], text)


@contextmanager
def in_flower_words() -> Iterator[None]:
    """Re-raise a ConfigError or RoundError from the block with its message in Flower's words."""
    try:
        yield
    except (ConfigError, RoundError) as err:
        raise type(err)(flower_words(str(err))) from None
