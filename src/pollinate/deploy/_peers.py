"""Mutual TLS on the link: who a caller's certificate says it is, and rotating the link's own.

With client certificates required (``--mtls``), the TLS handshake already refuses a caller
without a certificate, with one that the CA did not sign, and with one that has expired.
:class:`ClientCerts` checks the rest on every call, from the certificate gRPC hands the
handler (``context.auth_context()["x509_pem_cert"]``):

- its role, from the SAN URI ``pollinate:ROLE:NAME``: Fleet calls need ``node``, Control
  calls ``operator``;
- with a list of node certificates (``--node-certs``), that its public key is listed;
- that it is not revoked, by the CRL ``--revoked`` names (re-read when the file changes, so
  a certificate revoked while the link runs is refused from its next call on);
- that it has not expired since its connection was made.

The link binds a node id to the certificate's public key (its SubjectPublicKeyInfo), as it
binds one to a signing key: a node certificate cannot act as another node.

:class:`ServerTLS` gives the link's credentials, and re-reads ``server.pem``, ``server.key``
and the CA bundle when they change, as each new connection arrives: rotating certificates
needs no restart (connections already open keep the certificate they began with).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import AuthError, ConfigError, Forbidden
from ._certs import (
    CA_CERT,
    ROLES,
    SERVER_CERT,
    SERVER_KEY,
    URI_SCHEME,
    ca_bundle,
    load_certificates,
    load_crl,
    server_pair,
    spki,
)

__all__ = ["ClientCerts", "Peer", "ServerTLS"]

log = logging.getLogger("pollinate.link")

T = TypeVar("T")
_PEM_KEY = "x509_pem_cert"
_ISSUE = "`pollinate certs --out DIR --nodes N --operators M` issues them"


@dataclass(frozen=True, slots=True)
class Peer:
    """What a client certificate says: role, name, public key, serial number, issuer, expiry."""

    role: str
    name: str
    spki: bytes
    serial: int
    issuer: bytes
    not_after: dt.datetime

    def __str__(self) -> str:
        return f"{self.role} certificate {self.name!r} (serial {self.serial:x})"


@functools.lru_cache(maxsize=4096)
def peer_of(pem: bytes) -> Peer:
    """The Peer a client certificate (PEM) names; AuthError if it names no pollinate role."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise AuthError("the client certificate cannot be read") from None
    role, name = _role(cert)
    return Peer(
        role,
        name,
        spki(cert.public_key()),
        cert.serial_number,
        cert.issuer.public_bytes(),
        cert.not_valid_after_utc,
    )


def _role(cert: x509.Certificate) -> tuple[str, str]:
    """The (role, name) of the certificate's ``pollinate:ROLE:NAME`` SAN URI."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    for uri in uris:
        scheme, _, rest = uri.partition(":")
        role, _, name = rest.partition(":")
        if scheme == URI_SCHEME and role in ROLES and name:
            return role, name
    raise AuthError(
        f"the client certificate {cert.subject.rfc4514_string()!r} names no role: it needs "
        f"a SAN URI {URI_SCHEME}:node:NAME or {URI_SCHEME}:operator:NAME ({_ISSUE})"
    )


class WatchedFile(Generic[T]):
    """A file's parsed contents, parsed again when the file changes (checked at each ``get``).

    The first read raises ConfigError; a later change that does not parse is logged once
    and the last good contents stay, so a half-written file never opens the door.
    """

    def __init__(self, paths: Sequence[Path], parse: Callable[[], T], what: str) -> None:
        self._paths = paths
        self._parse = parse
        self._what = what
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._value = parse()

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in self._paths:
            try:
                st = os.stat(path)
            except OSError:
                stamps.append((-1, -1, -1))
            else:
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamps)

    def get(self) -> tuple[T, bool]:
        """The contents, and whether they were read again just now."""
        stamp = self._stat()
        with self._lock:
            if stamp == self._stamp:
                return self._value, False
            self._stamp = stamp
            try:
                self._value = self._parse()
            except ConfigError as err:
                log.warning(
                    "ignored the changed %s (the link keeps what it had): %s", self._what, err
                )
                return self._value, False
            log.info("read the changed %s", self._what)
            return self._value, True


class ClientCerts:
    """What the link checks of a caller's client certificate on every call (module doc).

    ``ca`` is the CA bundle that signs clients' certificates (read for the CRL's signature);
    ``node_certs`` (files or folders of ``*.pem``) lists the only node certificates admitted
    (None: any the CA signed); ``revoked`` is a CRL file the CA signed.
    """

    def __init__(
        self, ca: Path, node_certs: Sequence[Path] | None = None, revoked: Path | None = None
    ) -> None:
        self._listed = None if node_certs is None else _listed_keys(node_certs)
        self._revoked = (
            None
            if revoked is None
            else WatchedFile([revoked], lambda: _revoked_serials(revoked, ca), "revocation list")
        )

    def listed(self, key: bytes) -> bool:
        """Whether the public key ``key`` (SPKI DER) is on the link's list of node certs."""
        return self._listed is not None and key in self._listed

    def check(self, context: grpc.ServicerContext, role: str) -> Peer:
        """The caller's certificate, if it may make a call for ``role``.

        AuthError: no certificate, unknown, revoked or expired; Forbidden: the
        certificate of another role (a node's used for Control, or an operator's as a node).
        """
        pems = context.auth_context().get(_PEM_KEY)
        if not pems:
            raise AuthError(
                "no client certificate: this link admits callers with a certificate its CA "
                f"signed only (give --cert and --key; {_ISSUE})"
            )
        peer = peer_of(pems[0])
        self.check_valid(peer)
        if peer.role != role:
            what = "Control" if role == "operator" else "node (Fleet)"
            article = "an" if role[0] in "aeiou" else "a"
            raise Forbidden(f"{peer} may not make {what} calls: they need {article} {role!r} one")
        if role == "node" and self._listed is not None and peer.spki not in self._listed:
            raise AuthError(
                f"{peer} is not on this link's list of node certificates (--node-certs): "
                "add its .pem there and restart the link"
            )
        return peer

    def check_valid(self, peer: Peer) -> None:
        """AuthError if ``peer``'s certificate is revoked or has expired."""
        if self.revoked(peer):
            raise AuthError(f"{peer} is revoked (--revoked)")
        if peer.not_after <= dt.datetime.now(dt.timezone.utc):
            raise AuthError(f"{peer} expired at {peer.not_after:%Y-%m-%d %H:%M} UTC")

    def revoked(self, peer: Peer) -> bool:
        """Whether the CRL (as the file says now) lists ``peer``'s certificate."""
        if self._revoked is None:
            return False
        serials, _ = self._revoked.get()
        return (peer.issuer, peer.serial) in serials


def _listed_keys(sources: Sequence[Path]) -> frozenset[bytes]:
    """The public keys of the certificates in ``sources`` (files, or folders of ``*.pem``)."""
    keys: set[bytes] = set()
    for source in sources:
        files = sorted(source.glob("*.pem")) if source.is_dir() else [source]
        for path in files:
            if path.name in (CA_CERT, SERVER_CERT):
                continue  # the folder pollinate certs wrote: its node and operator .pem only
            try:
                certs = load_certificates(path, path.read_bytes())
            except OSError as err:
                raise ConfigError(f"cannot read {str(path)!r}: {err.strerror}") from None
            try:
                peer = peer_of(certs[0].public_bytes(Encoding.PEM))
            except AuthError as err:
                raise ConfigError(f"{str(path)!r} is not a client certificate: {err}") from None
            if peer.role == "node":
                keys.add(peer.spki)
    if not keys:
        shown = ", ".join(repr(str(s)) for s in sources)
        raise ConfigError(f"--node-certs {shown} holds no node certificates ({_ISSUE})")
    return frozenset(keys)


def _revoked_serials(path: Path, ca: Path) -> frozenset[tuple[bytes, int]]:
    """The (issuer, serial) pairs the CRL at ``path`` lists, once its signature is checked."""
    try:
        pem = path.read_bytes()
    except OSError as err:
        raise ConfigError(
            f"cannot read the CRL {str(path)!r}: {err.strerror} (`pollinate certs revoke "
            "--dir DIR NAME` writes DIR/revoked.crl)"
        ) from None
    crl = load_crl(path, pem)
    cas = load_certificates(ca, ca_bundle(ca))
    if not any(
        c.subject == crl.issuer and crl.is_signature_valid(c.public_key())  # type: ignore[arg-type]
        for c in cas
    ):
        raise ConfigError(
            f"the CRL {str(path)!r} is not signed by the CA in {str(ca)!r}: make it with "
            "`pollinate certs revoke --dir DIR NAME` in the CA's folder"
        )
    issuer = crl.issuer.public_bytes()
    return frozenset((issuer, entry.serial_number) for entry in crl)


class ServerTLS:
    """The link's TLS credentials from ``cert_dir``, re-read when the files change.

    With ``client_ca`` (a CA bundle) every caller must present a certificate it signed.
    """

    def __init__(self, cert_dir: Path, client_ca: Path | None = None) -> None:
        self._cert_dir = cert_dir
        self._client_ca = client_ca
        paths = [cert_dir / SERVER_CERT, cert_dir / SERVER_KEY]
        self._config = WatchedFile(
            [*paths, *([client_ca] if client_ca else [])], self._load, "certificate files"
        )

    def _load(self) -> grpc.ServerCertificateConfiguration:
        pair = server_pair(self._cert_dir)
        roots = None if self._client_ca is None else ca_bundle(self._client_ca)
        return grpc.ssl_server_certificate_configuration([pair], roots)

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials that take new files at the next connection after they change."""
        config, _ = self._config.get()
        return grpc.dynamic_ssl_server_credentials(
            config, self._fetch, require_client_authentication=self._client_ca is not None
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """New files for gRPC, which asks at each new connection; None keeps what it has."""
        config, changed = self._config.get()
        return config if changed else None
