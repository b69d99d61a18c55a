"""Natural partitions: one per writer, user or device id already in the data."""

from __future__ import annotations

from numpy.typing import ArrayLike

from ._common import Parts, as_labels, assemble, encode


def natural_id(ids: ArrayLike) -> Parts:
    """One partition per distinct id, in sorted id order (partition i is ``np.unique(ids)[i]``).

    The LEAF-style split (FEMNIST writers, Shakespeare speakers); no randomness involved.
    """
    codes, num_ids = encode(as_labels(ids, "ids"))
    return assemble(codes, num_ids)
