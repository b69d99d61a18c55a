"""Wire format: the versioned binary encoding of a Message, and of a Context.

Everything is little-endian; ``str`` is a u32 byte length then UTF-8, ``blob`` the same for
raw bytes. Layout::

    b"PLN"  version:u8  kind:u8 (b"M" message, b"C" context)
    message  run_id:i64 src_node_id:i64 dst_node_id:i64 ttl_s:f64 created_at:f64
             message_id:str message_type:str reply_to_message_id:str group_id:str
             body:u8  0: content:RecordDict | 1: error code:i64 reason:str
    context  run_id:i64 node_id:i64 node_config:config run_config:config state:RecordDict
    config   count:u32 (key:str value)*        (values: bool, int, float or str only)
    RecordDict           count:u32 (key:str kind:u8 (b"A", b"M", b"C") record)*
    Metric/ConfigRecord  count:u32 (key:str value)*
    value    tag:u8 then: int i64 | float f64 | bool u8 | str | bytes as a blob
             | list (tag 8 + element tag) count:u32 items (ints i64, floats f64, bools u8)
    ArrayRecord          count:u32 (key:str dtype:u8-length ASCII numpy ``dtype.str``
             ndim:u8 dims:u64*ndim, zero padding to a multiple of 64 bytes from the start
             of the encoding, raw C-order data)*

Ints travel as signed 64-bit integers: records refuse larger ones when they are set, and
encoding one anyway (in metadata, say) raises WireError. The lists of one encoding hold at
most ``records.MAX_LIST_ITEMS`` items in all, checked before any is decoded: a list decodes
to Python objects 8-16 times its wire size, where arrays decode without a copy. Decoding
never copies array data: each Array is a read-only view of the input buffer, which the
arrays keep alive (do not change a bytearray while they live). Nothing here uses pickle:
the input is untrusted, and bytes that are not a valid encoding raise WireError.
"""

from ._decode import decode, decode_context
from ._encode import encode, encode_context, encode_parts
from ._format import ALIGNMENT, FORMAT_VERSION, MAX_NDIM, SUPPORTED_VERSIONS

__all__ = [
    "ALIGNMENT",
    "FORMAT_VERSION",
    "MAX_NDIM",
    "SUPPORTED_VERSIONS",
    "decode",
    "decode_context",
    "encode",
    "encode_context",
    "encode_parts",
]
