"""TLS material for deployment: a development CA, the link's certificate, node identity keys.

Traffic between nodes and the link is TLS by default. ``make_dev_certs`` writes all a
development deployment needs into one folder; ``server_credentials`` and ``channel_credentials``
turn such files (or an organisation's own, named the same) into gRPC credentials, and say which
file is wrong, and how to make it, before gRPC fails with a handshake error that names neither.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import ConfigError

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "DEFAULT_HOSTNAMES",
    "SERVER_CERT",
    "SERVER_KEY",
    "CertFiles",
    "channel_credentials",
    "make_dev_certs",
    "server_credentials",
]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1")
"""What the link's development certificate covers unless told otherwise: this machine."""

MAX_DAYS = 36500
_CLOCK_SKEW = dt.timedelta(minutes=5)
"""Certificates start a little in the past, so a machine whose clock is behind accepts them."""
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_MAKE_THEM = "`pollinate certs --out DIR` makes them"


@dataclass(frozen=True, slots=True)
class CertFiles:
    """The files ``make_dev_certs`` wrote: the CA, the link's certificate, node key pairs."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    node_keys: tuple[Path, ...] = ()
    node_public_keys: tuple[Path, ...] = ()

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file, in the order written."""
        nodes = (
            p for pair in zip(self.node_keys, self.node_public_keys, strict=True) for p in pair
        )
        return (self.ca_cert, self.ca_key, self.server_cert, self.server_key, *nodes)


def make_dev_certs(
    out_dir: Path,
    hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
    nodes: int = 0,
    days: int = 365,
) -> CertFiles:
    """Write a development CA, a link certificate for ``hostnames`` and ``nodes`` key pairs.

    The CA and link keys are EC P-256; node identity keys are Ed25519 (private: PEM PKCS8,
    unencrypted; public: PEM SubjectPublicKeyInfo). Private keys are made readable by their
    owner only (0o600). Nothing is written if any of the files exists already.
    """
    names = _san_entries(hostnames)
    if not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    if nodes < 0:
        raise ConfigError(f"the number of nodes must be 0 or more, not {nodes}")
    files = CertFiles(
        ca_cert=out_dir / CA_CERT,
        ca_key=out_dir / CA_KEY,
        server_cert=out_dir / SERVER_CERT,
        server_key=out_dir / SERVER_KEY,
        node_keys=tuple(out_dir / f"node{i}.key" for i in range(1, nodes + 1)),
        node_public_keys=tuple(out_dir / f"node{i}.pub" for i in range(1, nodes + 1)),
    )
    _check_free(out_dir, files.paths)
    start = dt.datetime.now(dt.timezone.utc) - _CLOCK_SKEW
    end = start + _CLOCK_SKEW + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key, start, end)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _server_certificate(server_key, ca_key, ca_cert, names, start, end)
    contents: dict[Path, tuple[bytes, bool]] = {
        files.ca_cert: (ca_cert.public_bytes(serialization.Encoding.PEM), False),
        files.ca_key: (_private_pem(ca_key), True),
        files.server_cert: (server_cert.public_bytes(serialization.Encoding.PEM), False),
        files.server_key: (_private_pem(server_key), True),
    }
    for key_path, pub_path in zip(files.node_keys, files.node_public_keys, strict=True):
        node_key = ed25519.Ed25519PrivateKey.generate()
        contents[key_path] = (_private_pem(node_key), True)
        contents[pub_path] = (_public_pem(node_key.public_key()), False)
    for path, (data, private) in contents.items():
        _write(path, data, private=private)
    return files


def server_credentials(cert_dir: Path) -> grpc.ServerCredentials:
    """The link's TLS credentials, from ``cert_dir/server.pem`` and ``cert_dir/server.key``.

    ``server.pem`` may hold the full chain (the link's certificate first, then intermediates).
    """
    cert_path, key_path = cert_dir / SERVER_CERT, cert_dir / SERVER_KEY
    cert_pem = _read(cert_path, "the link's certificate")
    key_pem = _read(key_path, "the link's private key")
    certs = _load_certificates(cert_path, cert_pem)
    key = _load_private_key(key_path, key_pem)
    if _spki(key.public_key()) != _spki(certs[0].public_key()):
        raise ConfigError(
            f"{str(key_path)!r} is not the private key of the certificate {str(cert_path)!r}: "
            f"put the matching pair there ({_MAKE_THEM})"
        )
    return grpc.ssl_server_credentials([(key_pem, cert_pem)])


def channel_credentials(root_cert: Path) -> grpc.ChannelCredentials:
    """A node's TLS credentials: trust the link whose certificate ``root_cert`` (a CA) signed."""
    pem = _read(root_cert, "the root certificate")
    certs = _load_certificates(root_cert, pem)
    if not any(_is_ca(cert) for cert in certs):
        subject = certs[0].subject.rfc4514_string()
        raise ConfigError(
            f"{str(root_cert)!r} is not a CA certificate (it is {subject!r}'s): give the "
            f"certificate of the CA that signed the link's certificate, e.g. ca.pem ({_MAKE_THEM})"
        )
    return grpc.ssl_channel_credentials(root_certificates=pem)


def _san_entries(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    """Each hostname as a SubjectAlternativeName entry: an IP address or a DNS name."""
    if isinstance(hostnames, str) or not hostnames:
        raise ConfigError("give at least one hostname for the link's certificate (e.g. localhost)")
    entries: dict[str, x509.GeneralName] = {}
    for hostname in hostnames:
        name = hostname.strip().lower()
        try:
            address = ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
        except ValueError:
            entries.setdefault(name, x509.DNSName(_dns_name(hostname, name)))
        else:
            entries.setdefault(str(address), x509.IPAddress(address))
    return list(entries.values())


def _dns_name(hostname: str, name: str) -> str:
    labels = name.removesuffix(".").split(".")
    first = 1 if labels[0] == "*" and len(labels) > 2 else 0  # *.example.org, not *.org
    if len(name) <= 253 and all(_DNS_LABEL.fullmatch(label) for label in labels[first:]):
        return name.removesuffix(".")
    port = " without the port" if ":" in name else ""
    raise ConfigError(
        f"{hostname!r} is not a hostname: give a DNS name (link.example.org) or an IP "
        f"address (10.0.0.5){port}"
    )


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey, start: dt.datetime, end: dt.datetime
) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pollinate (development only)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "pollinate development CA"),
        ]
    )
    public = key.public_key()
    return (
        _builder(name, name, public, start, end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _server_certificate(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    names: list[x509.GeneralName],
    start: dt.datetime,
    end: dt.datetime,
) -> x509.Certificate:
    first = str(names[0].value)
    common_name = first if len(first) <= 64 else "pollinate link"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    return (
        _builder(subject, ca_cert.subject, public, start, end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public: ec.EllipticCurvePublicKey,
    start: dt.datetime,
    end: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )


def _key_usage(*, key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _private_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_pem(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _spki(key: PublicKeyTypes) -> bytes:
    """A public key's DER SubjectPublicKeyInfo: equal bytes, equal keys, whatever the type."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_free(out_dir: Path, paths: Sequence[Path]) -> None:
    """A ConfigError unless ``out_dir`` is (or can be) a folder and none of ``paths`` exists."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{str(out_dir)!r} is a file, not a folder: choose another --out")
    taken = [p for p in paths if p.exists() or p.is_symlink()]
    if taken:
        more = f" (and {len(taken) - 1} more of the files to write)" if len(taken) > 1 else ""
        raise ConfigError(
            f"{str(taken[0])!r} already exists{more}: choose another --out folder, or delete it"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the folder {str(out_dir)!r}: {err.strerror}") from None


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Create ``path`` (never overwrite it); a private file is readable by its owner only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    except FileExistsError:
        raise ConfigError(
            f"{str(path)!r} already exists: choose another --out folder, or delete it"
        ) from None
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    if private:
        path.chmod(0o600)  # exact, whatever the umask; the file was never more open than this


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} does not exist; {_MAKE_THEM}") from None
    except OSError as err:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {err.strerror}") from None


def _load_certificates(path: Path, pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ConfigError(
            f"{str(path)!r} is not a PEM certificate (one that starts with "
            f"-----BEGIN CERTIFICATE-----); {_MAKE_THEM}"
        ) from None


def _load_private_key(path: Path, pem: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ConfigError(
            f"{str(path)!r} is encrypted with a password: the link needs it unencrypted "
            "(and readable by the link's user only, chmod 600)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            f"{str(path)!r} is not a PEM private key (one that starts with "
            f"-----BEGIN ... PRIVATE KEY-----); {_MAKE_THEM}"
        ) from None


def _is_ca(cert: x509.Certificate) -> bool:
    """False only for a certificate that says it is not a CA; old v1 roots say nothing."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return True
