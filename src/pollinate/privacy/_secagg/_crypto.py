"""The primitives SecAgg+ stands on, all from ``cryptography``.

- X25519 key pairs, and pairwise keys derived from them with HKDF-SHA256 (salted with the
  round's session id, labelled by use, so a key for shares never doubles as a mask seed);
- ChaCha20-Poly1305 to encrypt and authenticate the shares the server relays, bound by
  associated data to the session, the stage, the sender and the receiver;
- a PRG: AES-256-CTR keystream from a 32-byte seed, read straight into a numpy array.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ._errors import SecAggError

__all__ = [
    "SEED_BYTES",
    "agree",
    "expand",
    "is_valid_public_key",
    "key_pair",
    "open_sealed",
    "public_key",
    "seal",
]

SEED_BYTES = 32
_NONCE_BYTES = 12
_ZERO_IV = bytes(16)  # each seed drives one keystream only, so a fixed counter start is safe


def key_pair() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair as raw bytes: (private, public)."""
    private = X25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return raw, public_key(raw)


def public_key(private: bytes) -> bytes:
    """The raw public key of a raw X25519 private key."""
    key = X25519PrivateKey.from_private_bytes(private).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def is_valid_public_key(public: bytes) -> bool:
    """Whether ``public`` is an X25519 key a peer can agree with (not a low-order point).

    A trial exchange with a throwaway key: a low-order point (the all-zero key, say) gives
    the all-zero shared secret, which ``cryptography`` refuses.
    """
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return False
    return True


def agree(private: bytes, peer_public: bytes, salt: bytes, label: bytes) -> bytes:
    """A 32-byte key both ends derive alike: X25519, then HKDF-SHA256 (salt, label)."""
    try:
        peer = X25519PublicKey.from_public_bytes(peer_public)
        shared = X25519PrivateKey.from_private_bytes(private).exchange(peer)
    except ValueError as err:
        raise SecAggError(f"secagg: a public key is not a valid X25519 key ({err})") from None
    return HKDF(hashes.SHA256(), SEED_BYTES, salt, label).derive(shared)


def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """``plaintext`` encrypted and authenticated with ``associated`` bound to it."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, sealed: bytes, associated: bytes, what: str) -> bytes:
    """The plaintext ``seal`` sealed; SecAggError naming ``what`` if it was altered."""
    nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, body, associated)
    except (InvalidTag, ValueError):
        raise SecAggError(
            f"secagg: {what} failed authentication: it was altered, replayed from another "
            "round or stage, or sealed for another node or public key"
        ) from None


def expand(seed: bytes, length: int, dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """``length`` uniform integers of ``dtype`` (uint32 or uint64) from a 32-byte seed.

    The AES-256-CTR keystream of the seed, read as the array without a copy (read-only).
    """
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(_ZERO_IV)).encryptor()
    stream = encryptor.update(bytes(length * dtype.itemsize))
    return np.frombuffer(stream, dtype)
