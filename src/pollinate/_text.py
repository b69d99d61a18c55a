"""Text from the network made safe for a terminal: no control or bidi characters reach it."""

from __future__ import annotations

import re

__all__ = ["printable"]

# C0 controls but tab, DEL, C1 controls, and the bidi controls that reorder what follows
# (U+202E shows "exe.txt" as "txt.exe"): a node's text must not move the cursor, clear the
# screen, write a hyperlink (OSC 8) or hide itself.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with each control or bidi character written out as an escape (backslash x1b)."""
    return _UNSAFE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)
