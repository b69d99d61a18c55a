"""A worker's replies through shared memory: written once by the worker, copied once by the parent.

A model-sized reply (hundreds of KB) crossing a socket goes in dozens of chunks, each a
wake-up of the parent and of the worker; on a machine with as many workers as cores that
ping-pong costs about as much as a small client's training. Instead each worker keeps
memory files (Linux ``memfd``) that both processes map: the worker writes a reply there, and
the parent copies it out into memory of its own before it gives that worker the task that
would reuse that buffer, so nothing the parent keeps points into it. The file's
descriptor crosses the worker's socket once (``SCM_RIGHTS``), and again only if a bigger
reply needs a bigger file. Where there is no ``memfd`` every reply takes the socket.
"""

from __future__ import annotations

import mmap
import os
import socket
from collections.abc import Sequence
from multiprocessing.connection import Connection

__all__ = [
    "MAX_SHARED_BYTES",
    "MIN_SHARED_BYTES",
    "SHARED",
    "ReplyArea",
    "send_fd",
    "shared_memory_works",
]

MIN_SHARED_BYTES = 1 << 16
"""Replies smaller than this take the socket: one write, no copy saved."""
MAX_SHARED_BYTES = 1 << 24
"""Replies bigger than this take the socket too: in big chunks it costs little more, and a
worker's buffers (two, see ``PIPELINE``) would hold that much memory for the whole run."""


def shared_memory_works() -> bool:
    """Whether this platform has what the shared reply area needs (Linux: memfd, fd passing)."""
    return hasattr(os, "memfd_create") and hasattr(socket, "send_fds")


SHARED = shared_memory_works()


class ReplyArea:
    """One worker's reply buffer, seen from either side (the worker writes, the parent reads)."""

    def __init__(self) -> None:
        self._map: mmap.mmap | None = None

    @property
    def size(self) -> int:
        """The buffer's size in bytes (0: none yet)."""
        return 0 if self._map is None else len(self._map)

    def write(self, parts: Sequence[memoryview]) -> int | None:
        """Write ``parts`` one after another (worker side).

        Returns the descriptor of a new, bigger file if the reply outgrew the old one (or
        there was none): the caller sends it to the parent (``send_fd``), then closes it.
        """
        total = sum(part.nbytes for part in parts)
        fresh = None
        if total > self.size:
            fresh = os.memfd_create("pollinate-reply", os.MFD_CLOEXEC)
            os.ftruncate(fresh, _roomy(total))
            self._adopt(fresh)
        assert self._map is not None
        with memoryview(self._map) as area:
            offset = 0
            for part in parts:
                area[offset : offset + part.nbytes] = part.cast("B")
                offset += part.nbytes
        return fresh

    def read(self, size: int) -> bytearray:
        """A copy of the buffer's first ``size`` bytes (parent side), the parent's to keep."""
        assert self._map is not None, "no shared reply buffer was received"
        copy = bytearray(size)
        with memoryview(self._map) as area:
            copy[:] = area[:size]
        return copy

    def receive(self, conn: Connection) -> None:
        """Map the new buffer whose descriptor the worker sent on ``conn`` (parent side)."""
        with socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            _, fds, _, _ = socket.recv_fds(sock, 1, 1)
        if len(fds) != 1:
            raise EOFError("the worker's shared reply buffer did not arrive")
        self._adopt(fds[0])
        os.close(fds[0])

    def close(self) -> None:
        """Unmap the buffer (the kernel frees it once neither side maps it)."""
        if self._map is not None:
            self._map.close()
            self._map = None

    def _adopt(self, fd: int) -> None:
        self.close()
        self._map = mmap.mmap(fd, 0)


def _roomy(size: int) -> int:
    """``size`` plus an eighth, in whole 64 KiB blocks: replies that vary a little fit again."""
    block = 1 << 16
    return -(-(size + size // 8) // block) * block


def send_fd(conn: Connection, fd: int) -> None:
    """Send the descriptor ``fd`` over ``conn``'s socket (then the caller may close it)."""
    with socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        socket.send_fds(sock, [b"F"], [fd])
