"""Signed frames: how a node with a key proves, frame by frame, that it sent what arrives.

A sealed frame is a ``signed`` frame whose payload is the inner frame's bytes and whose
header carries the node's signature over them (``_identity.sign``: method, body digest,
timestamp, nonce). Signing happens as each frame leaves, so a long transfer never carries
stale timestamps; the link verifies each frame and that its key is the node's own.
"""

from __future__ import annotations

from ..errors import AuthError
from ._frames import Frame, decode_frame, encode_frame
from ._identity import NodeKey, Signature, Verifier, body_digest, sign

__all__ = ["seal", "unseal"]


def seal(key: NodeKey, method: str, inner: bytes) -> bytes:
    """``inner`` (an encoded frame) wrapped in a ``signed`` frame for ``method``."""
    signature = sign(key, method, body_digest(inner))
    header = {
        "public_key": signature.public_key.hex(),
        "timestamp_ms": signature.timestamp_ms,
        "nonce": signature.nonce.hex(),
        "signature": signature.signature.hex(),
    }
    return encode_frame(Frame("signed", header, inner))


def unseal(verifier: Verifier, method: str, data: bytes) -> tuple[bytes, Frame]:
    """The signer's public key and the inner frame; an AuthError if it cannot be trusted."""
    outer = decode_frame(data)
    if outer.kind != "signed":
        raise AuthError(
            f"a {outer.kind!r} frame is not signed: this link requires node keys "
            "(start the node with --key)"
        )
    try:
        signature = Signature(
            bytes.fromhex(outer.header["public_key"]),
            int(outer.header["timestamp_ms"]),
            bytes.fromhex(outer.header["nonce"]),
            bytes.fromhex(outer.header["signature"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise AuthError(f"malformed frame signature: {err}") from None
    inner = bytes(outer.payload)
    public_key = verifier.verify(method, body_digest(inner), signature)
    return public_key, decode_frame(inner)
