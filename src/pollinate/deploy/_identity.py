"""Node identity: Ed25519 node keys, signed requests, and the link's verifier.

Each node holds an Ed25519 key pair. Every request it sends carries a :class:`Signature`
over an unambiguous encoding of (version tag, gRPC method, body digest, timestamp, nonce),
travelling as gRPC metadata. The link's :class:`Verifier` checks it and refuses, with
:class:`~pollinate.errors.AuthError`:

- tampering: a changed method, body, timestamp or nonce breaks the signature;
- impersonation of another node's key: claiming a public key needs its private key;
- replay: a (public key, nonce) pair is accepted once, and only within ``max_skew_s`` of the
  link's clock, so a captured request cannot be sent again later;
- unregistered nodes: with ``registered`` set (``--require-registration``), only listed keys.

What it relies on:

- TLS for confidentiality and for the link's own identity; signatures hide nothing.
- The link binds a node id to the public key that registered it, and checks on every request
  that the verified key owns the node id the request sends or receives as. That binding lives
  in the link (``_link.py``), not here: ``verify`` only says which key signed.
- Roughly synchronised clocks (NTP): a request further than ``max_skew_s`` from the link's
  clock is refused.
- The nonce cache lives in memory: a restarted link forgets it, so a request captured just
  before a restart could be replayed within ``max_skew_s`` of it, by someone who can read
  the traffic, which TLS prevents.

Key files are what ``pollinate certs --signing-keys`` writes: the private key as unencrypted
PKCS#8 PEM (``node1.key``, mode 0600), the public key as SubjectPublicKeyInfo PEM
(``node1.pub``). This scheme is for a link behind a TLS-terminating proxy, where the link
never sees a client certificate; otherwise nodes use mutual TLS (``_peers``).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import os
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import AuthError, ConfigError

__all__ = [
    "NodeKey",
    "Signature",
    "Verifier",
    "body_digest",
    "key_id",
    "load_public_keys",
    "sign",
]

StrPath: TypeAlias = "str | os.PathLike[str]"

VERSION: Final = "1"
PUBLIC_KEY_SIZE: Final = 32
NONCE_SIZE: Final = 16
SIGNATURE_SIZE: Final = 64
DEFAULT_MAX_NONCES: Final = 100_000

# gRPC metadata keys: lowercase; a "-bin" suffix marks a binary value.
VERSION_KEY: Final = "pollinate-auth-version"
PUBLIC_KEY_KEY: Final = "pollinate-public-key-bin"
TIMESTAMP_KEY: Final = "pollinate-timestamp-ms"
NONCE_KEY: Final = "pollinate-nonce-bin"
SIGNATURE_KEY: Final = "pollinate-signature-bin"
_KEYS: Final = (VERSION_KEY, PUBLIC_KEY_KEY, TIMESTAMP_KEY, NONCE_KEY, SIGNATURE_KEY)

_DOMAIN: Final = b"pollinate/request/v" + VERSION.encode() + b"\x00"
_U32: Final = struct.Struct("<I")
_I64: Final = struct.Struct("<q")
_DIGITS: Final = re.compile(r"[0-9]{1,19}")
_MAKE_KEYS: Final = "`pollinate certs --out DIR --nodes N --signing-keys` makes signing keys"


def key_id(public_key: bytes) -> str:
    """A short stable fingerprint of a raw public key for logs: 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def body_digest(*parts: bytes | memoryview) -> bytes:
    """SHA-256 of the parts joined; ``hashlib.sha256`` fed chunk by chunk gives the same."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()


class NodeKey:
    """A node's Ed25519 private key; ``repr`` shows only its fingerprint."""

    __slots__ = ("_private", "_public")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self._public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> NodeKey:
        """A fresh random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: StrPath) -> NodeKey:
        """Read an unencrypted PKCS#8 PEM Ed25519 private key; ConfigError names a bad file."""
        data = _read(path, "node key")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except TypeError:  # the key is encrypted
            raise ConfigError(
                f"node key file {path} is encrypted; pollinate needs an unencrypted PEM key "
                f"({_MAKE_KEYS})"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            hint = ": it holds a public key (.pub)" if b"PUBLIC KEY" in data else ""
            raise ConfigError(
                f"node key file {path} is not a PEM private key{hint} ({_MAKE_KEYS})"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(
                f"node key file {path} holds a {type(key).__name__.lstrip('_')}, not an "
                f"Ed25519 signing key: a client certificate's key goes with --cert ({_MAKE_KEYS})"
            )
        return cls(key)

    def save(self, path: StrPath) -> None:
        """Write the key as unencrypted PKCS#8 PEM, mode 0600; never overwrites a file."""
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConfigError(f"refusing to overwrite the existing key file {path}") from None
        except OSError as exc:
            raise ConfigError(f"cannot write the key file {path}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(pem)

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM: the contents of a ``.pub`` file."""
        return self._private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        return self._public

    @property
    def node_key_id(self) -> str:
        """A short stable fingerprint of the public key, for logs."""
        return key_id(self._public)

    def __repr__(self) -> str:
        return f"NodeKey(id={self.node_key_id})"


def load_public_keys(paths_or_dir: StrPath | Iterable[StrPath]) -> set[bytes]:
    """The raw public keys of the link's registration list.

    Takes one path or several; each is a folder (its ``*.pub`` files, not recursive) or a
    SubjectPublicKeyInfo PEM Ed25519 public key file. ConfigError names any bad file, and a
    list that comes out empty.
    """
    sources = [paths_or_dir] if isinstance(paths_or_dir, (str, os.PathLike)) else paths_or_dir
    keys: set[bytes] = set()
    for source in map(Path, sources):
        files = sorted(source.glob("*.pub")) if source.is_dir() else [source]
        if not files:
            raise ConfigError(f"registration folder {source} holds no *.pub files ({_MAKE_KEYS})")
        keys.update(_load_public_key(file) for file in files)
    if not keys:
        raise ConfigError("the registration list is empty: pass a folder of node .pub files")
    return keys


def _load_public_key(path: Path) -> bytes:
    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            f"public key file {path} is not a PEM public key ({_MAKE_KEYS})"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"public key file {path} does not hold an Ed25519 key ({_MAKE_KEYS})")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _read(path: StrPath, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist ({_MAKE_KEYS})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class Signature:
    """A request's proof of origin; raises AuthError if a field has the wrong type or size."""

    public_key: bytes
    timestamp_ms: int
    nonce: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_size(PUBLIC_KEY_KEY, self.public_key, PUBLIC_KEY_SIZE)
        _check_size(NONCE_KEY, self.nonce, NONCE_SIZE)
        _check_size(SIGNATURE_KEY, self.signature, SIGNATURE_SIZE)
        ts = self.timestamp_ms
        if type(ts) is not int or not 0 <= ts < 2**63:
            raise AuthError(f"metadata {TIMESTAMP_KEY} must be a non-negative integer, got {ts!r}")

    def to_metadata(self) -> list[tuple[str, str | bytes]]:
        """The gRPC metadata pairs that carry this signature."""
        return [
            (VERSION_KEY, VERSION),
            (PUBLIC_KEY_KEY, self.public_key),
            (TIMESTAMP_KEY, str(self.timestamp_ms)),
            (NONCE_KEY, self.nonce),
            (SIGNATURE_KEY, self.signature),
        ]

    @classmethod
    def from_metadata(cls, metadata: Iterable[tuple[str, str | bytes]]) -> Signature:
        """Parse gRPC metadata (other keys are ignored); AuthError if missing or malformed."""
        found: dict[str, str | bytes] = {}
        for key, value in metadata:
            if key in _KEYS:
                if key in found:
                    raise AuthError(f"metadata {key} appears more than once")
                found[key] = value
        missing = [key for key in _KEYS if key not in found]
        if missing:
            raise AuthError(f"request is not signed: metadata {', '.join(missing)} missing")
        version = _text(found[VERSION_KEY])
        if version != VERSION:
            raise AuthError(
                f"unsupported {VERSION_KEY} {version!r}; this side speaks {VERSION!r}: "
                "run the same pollinate version on the link and the nodes"
            )
        timestamp = _text(found[TIMESTAMP_KEY])
        if not _DIGITS.fullmatch(timestamp):
            raise AuthError(f"metadata {TIMESTAMP_KEY} must be decimal digits, got {timestamp!r}")
        return cls(
            public_key=found[PUBLIC_KEY_KEY],  # type: ignore[arg-type]  # __post_init__ checks
            timestamp_ms=int(timestamp),
            nonce=found[NONCE_KEY],  # type: ignore[arg-type]
            signature=found[SIGNATURE_KEY],  # type: ignore[arg-type]
        )


def _check_size(name: str, value: object, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else f"a {type(value).__name__}"
        raise AuthError(f"metadata {name} must be {size} bytes, got {got}")


def _text(value: str | bytes) -> str:
    return value.decode("ascii", errors="replace") if isinstance(value, bytes) else value


def _signed_bytes(method: str, digest: bytes, timestamp_ms: int, nonce: bytes) -> bytes:
    encoded = method.encode("utf-8")
    return b"".join(
        (
            _DOMAIN,
            _U32.pack(len(encoded)),
            encoded,
            _U32.pack(len(digest)),
            digest,
            _I64.pack(timestamp_ms),
            nonce,
        )
    )


def sign(key: NodeKey, method: str, body_digest: bytes, *, now: float | None = None) -> Signature:
    """Sign a request: its gRPC method (e.g. ``/pollinate.Link/Pull``) and body digest."""
    timestamp_ms = int((time.time() if now is None else now) * 1000)
    nonce = secrets.token_bytes(NONCE_SIZE)
    data = _signed_bytes(method, bytes(body_digest), timestamp_ms, nonce)
    return Signature(key.public_key, timestamp_ms, nonce, key._private.sign(data))


def signed_metadata(
    key: NodeKey | None, method: str, body_digest: bytes
) -> list[tuple[str, str | bytes]] | None:
    """The gRPC metadata that signs a request with ``key`` (None without a key)."""
    return None if key is None else sign(key, method, body_digest).to_metadata()


class Verifier:
    """Checks signed requests: signature, freshness, replay and, if set, registration.

    Thread-safe. Replay protection remembers each accepted (public key, nonce) until its
    timestamp leaves the ``max_skew_s`` window, and at most ``max_nonces`` of them (about
    220 bytes each: ~22 MB at the default 100,000, enough for ~1,600 requests/s with the
    default 60 s skew). When full it forgets the oldest, and from then on refuses requests
    timestamped no later than anything forgotten: memory stays bounded and a replay is
    never accepted, at the cost of refusing long-delayed requests under overload.
    """

    def __init__(
        self,
        max_skew_s: float = 60.0,
        registered: Collection[bytes] | None = None,
        clock: Callable[[], float] = time.time,
        *,
        max_nonces: int = DEFAULT_MAX_NONCES,
    ) -> None:
        if not (math.isfinite(max_skew_s) and max_skew_s > 0):
            raise ConfigError(f"max_skew_s must be a positive number of seconds, got {max_skew_s}")
        if max_nonces < 1:
            raise ConfigError(f"max_nonces must be at least 1, got {max_nonces}")
        self._skew_ms = max_skew_s * 1000
        self._registered = None if registered is None else frozenset(registered)
        self._clock = clock
        self._max_nonces = max_nonces
        self._lock = threading.Lock()
        self._seen: set[bytes] = set()
        self._expiry: list[tuple[int, bytes]] = []  # heap of (timestamp_ms, key + nonce)
        self._floor = -1  # refuse timestamps <= this: the newest one forgotten

    @property
    def cached_nonces(self) -> int:
        """How many nonces the replay cache holds now."""
        return len(self._seen)

    def lists(self, public_key: bytes) -> bool:
        """Whether ``public_key`` is on the registration list (False without a list)."""
        return self._registered is not None and public_key in self._registered

    def verify(
        self,
        method: str,
        body_digest: bytes,
        signature: Signature,
        received_at: float | None = None,
    ) -> bytes:
        """The raw public key that signed this request; AuthError with the reason if none.

        ``received_at`` (the clock when the request began to arrive) judges freshness for
        a long upload, whose body is checked only once it is whole.
        """
        public_key = self.precheck(signature, received_at)
        now_ms = (self._clock() if received_at is None else received_at) * 1000
        data = _signed_bytes(method, bytes(body_digest), signature.timestamp_ms, signature.nonce)
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature.signature, data)
        except (InvalidSignature, ValueError):
            raise AuthError(
                f"bad signature from node key {key_id(public_key)} on {method}: the request "
                "was altered, or signed by a key other than the one it claims"
            ) from None
        self._remember(public_key + signature.nonce, signature.timestamp_ms, now_ms)
        return public_key

    def precheck(self, signature: Signature, received_at: float | None = None) -> bytes:
        """What can be checked before the body arrives: a registered key, a fresh timestamp."""
        public_key = signature.public_key
        if self._registered is not None and public_key not in self._registered:
            raise AuthError(
                f"key {key_id(public_key)} is not registered, and this link admits "
                "registered keys only: add its .pub file to the link's list of keys"
            )
        now = self._clock() if received_at is None else received_at
        self._check_fresh(signature.timestamp_ms, now * 1000)
        return public_key

    def verify_metadata(
        self, method: str, body_digest: bytes, metadata: Iterable[tuple[str, str | bytes]]
    ) -> bytes:
        """``verify`` on a signature parsed from gRPC metadata."""
        return self.verify(method, body_digest, Signature.from_metadata(metadata))

    def _check_fresh(self, timestamp_ms: int, now_ms: float) -> None:
        offset_s = (timestamp_ms - now_ms) / 1000
        if offset_s < -self._skew_ms / 1000:
            raise AuthError(
                f"stale request: signed {-offset_s:.1f} s ago, more than the "
                f"{self._skew_ms / 1000:g} s allowed; check the node's clock (NTP) and resend"
            )
        if offset_s > self._skew_ms / 1000:
            raise AuthError(
                f"request from the future: signed {offset_s:.1f} s ahead of the link's clock, "
                f"more than the {self._skew_ms / 1000:g} s allowed; check the clocks (NTP)"
            )

    def _remember(self, entry: bytes, timestamp_ms: int, now_ms: float) -> None:
        with self._lock:
            while self._expiry and self._expiry[0][0] + self._skew_ms < now_ms:
                self._forget()
            if timestamp_ms <= self._floor:
                raise AuthError(
                    "request too old for the replay check: the link has forgotten nonces "
                    "this old (it is under heavy load or its clock moved back); resend"
                )
            if entry in self._seen:
                raise AuthError(
                    f"replayed request: node key {key_id(entry[:PUBLIC_KEY_SIZE])} already "
                    "used this nonce"
                )
            self._seen.add(entry)
            heapq.heappush(self._expiry, (timestamp_ms, entry))
            while len(self._seen) > self._max_nonces:
                self._forget()

    def _forget(self) -> None:
        timestamp_ms, entry = heapq.heappop(self._expiry)
        self._seen.discard(entry)
        self._floor = max(self._floor, timestamp_ms)
