"""The constants of the wire format: magic bytes, versions, tags and struct layouts."""

from __future__ import annotations

import struct
from typing import Final

MAGIC: Final = b"PLN"
FORMAT_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = (1,)
ALIGNMENT: Final = 64  # array data starts at a multiple of this, from the encoding's start
MAX_NDIM: Final = 32

MESSAGE: Final = ord("M")  # the kind byte after the version
CONTEXT: Final = ord("C")
CONTENT: Final = 0  # a message's body
ERROR: Final = 1
ARRAYS: Final = ord("A")  # record kinds in a RecordDict
METRICS: Final = ord("M")
CONFIGS: Final = ord("C")
INT: Final = 1  # value tags
FLOAT: Final = 2
BOOL: Final = 3
STR: Final = 4
BYTES: Final = 5
LIST: Final = 8  # a list's tag is LIST + its element's tag
USER_CONFIG_TAGS: Final = frozenset((BOOL, INT, FLOAT, STR))

U8: Final = struct.Struct("<B")
U32: Final = struct.Struct("<I")
I64: Final = struct.Struct("<q")
F64: Final = struct.Struct("<d")
PREFIX: Final = struct.Struct("<3sBB")  # magic, version, kind
METADATA: Final = struct.Struct("<qqqdd")  # run_id, src, dst, ttl_s, created_at
CONTEXT_IDS: Final = struct.Struct("<qq")  # run_id, node_id
