"""NodeStates: the ``context.state`` of every virtual node, kept compactly between rounds.

A simulation of 100,000 nodes must not hold 100,000 RecordDicts. A node that never ran
costs nothing; a node that ran with an empty state costs one dict entry; any other state is
kept as its wire encoding (one bytes object, arrays included). Past a memory budget the
oldest encodings move to a private temporary SQLite file, which SQLite deletes when the
store is closed. A node's state is decoded again only when the node is sampled.
"""

from __future__ import annotations

import sqlite3

from .. import wire
from ..context import Context
from ..records import RecordDict

__all__ = ["DEFAULT_MEMORY_BYTES", "NodeStates"]

DEFAULT_MEMORY_BYTES = 256 * 2**20
"""Encoded state held in memory before the oldest spills to disk: 256 MiB."""

_EMPTY = b""
"""The one value stored for every node that ran and kept nothing."""


class NodeStates:
    """Encoded node states: in memory up to ``memory_bytes``, the oldest beyond it on disk."""

    def __init__(self, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        self._memory_bytes = memory_bytes
        self._held: dict[int, bytes] = {}  # insertion order: the oldest spills first
        self._held_bytes = 0
        self._disk: sqlite3.Connection | None = None
        self._on_disk = 0

    def __len__(self) -> int:
        """How many nodes have a state (nodes that ran)."""
        return len(self._held) + self._on_disk

    @property
    def memory_bytes(self) -> int:
        """Bytes of encoded state held in memory now."""
        return self._held_bytes

    @property
    def disk_count(self) -> int:
        """How many nodes' states were spilled to disk."""
        return self._on_disk

    def get(self, node_id: int) -> RecordDict | None:
        """A fresh copy of the node's state (None if it never ran); arrays are read-only."""
        data = self._held.get(node_id)
        if data is None:
            data = self._load(node_id)
            if data is None:
                return None
        if not data:
            return RecordDict()
        return wire.decode_context(data).state

    def put(self, node_id: int, state: RecordDict) -> None:
        """Keep the node's state as it is now (its encoding: later changes are not seen)."""
        data = wire.encode_context(Context(0, node_id, {}, {}, state)) if state else _EMPTY
        old = self._held.pop(node_id, None)
        if old is not None:
            self._held_bytes -= len(old)
        elif self._disk is not None:
            gone = self._disk.execute("DELETE FROM states WHERE node = ?", (node_id,))
            self._on_disk -= gone.rowcount
        self._held[node_id] = data
        self._held_bytes += len(data)
        if self._held_bytes > self._memory_bytes:
            self._spill()

    def close(self) -> None:
        """Forget every state and delete the spill file."""
        self._held.clear()
        self._held_bytes = 0
        if self._disk is not None:
            self._disk.close()
            self._disk = None
            self._on_disk = 0

    def _spill(self) -> None:
        """Move the oldest encodings to disk until what is held fits the budget."""
        disk = self._disk if self._disk is not None else self._open_disk()
        moved = []
        while self._held_bytes > self._memory_bytes and self._held:
            node_id = next(iter(self._held))
            data = self._held.pop(node_id)
            self._held_bytes -= len(data)
            moved.append((node_id, data))
        disk.executemany("INSERT INTO states VALUES (?, ?)", moved)
        self._on_disk += len(moved)

    def _open_disk(self) -> sqlite3.Connection:
        # "" is a private temporary database file that SQLite deletes when it is closed
        disk = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        disk.execute("PRAGMA cache_size = -4096")  # 4 MiB of pages cached: the rest is on disk
        disk.execute("CREATE TABLE states (node INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        self._disk = disk
        return disk

    def _load(self, node_id: int) -> bytes | None:
        if self._disk is None:
            return None
        row = self._disk.execute("SELECT data FROM states WHERE node = ?", (node_id,)).fetchone()
        return None if row is None else bytes(row[0])
