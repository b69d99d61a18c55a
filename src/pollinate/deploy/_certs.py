"""TLS material for deployment: a development CA, the link's certificate, client certificates.

Traffic between nodes and the link is TLS by default. ``make_dev_certs`` writes all a
development deployment needs into one folder: the CA, the link's certificate, and a client
certificate for each node and operator (mutual TLS: the SAN URI ``pollinate:ROLE:NAME`` says
who it is), or with ``signing_keys`` the Ed25519 key pairs of per-message signing instead.
``revoke`` adds certificates to the folder's CRL. ``server_credentials`` and
``channel_credentials`` turn such files (or an organisation's own, named the same) into gRPC
credentials, and say which file is wrong, and how to make it, before gRPC fails with a
handshake error that names neither.
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
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import ConfigError

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "DEFAULT_HOSTNAMES",
    "REVOKED",
    "ROLES",
    "SERVER_CERT",
    "SERVER_KEY",
    "URI_SCHEME",
    "CertFiles",
    "ClientFiles",
    "ca_bundle",
    "channel_credentials",
    "client_certificate",
    "load_certificates",
    "load_crl",
    "make_dev_certs",
    "revoke",
    "role_uri",
    "server_credentials",
    "server_pair",
    "spki",
]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
REVOKED = "revoked.crl"
URI_SCHEME = "pollinate"
"""Client certificates name their holder with a SAN URI ``pollinate:ROLE:NAME``."""
ROLES = ("node", "operator")
DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1")
"""What the link's development certificate covers unless told otherwise: this machine."""

MAX_DAYS = 36500
_CLOCK_SKEW = dt.timedelta(minutes=5)
"""Certificates start a little in the past, so a machine whose clock is behind accepts them."""
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_MAKE_THEM = "`pollinate certs --out DIR` makes them"


@dataclass(frozen=True, slots=True)
class ClientFiles:
    """One node's or operator's files: a private key and its certificate (or public key)."""

    role: str
    name: str
    key: Path
    public: Path
    """``NAME.pem``, a certificate the CA signed; or ``NAME.pub``, an Ed25519 public key."""


@dataclass(frozen=True, slots=True)
class CertFiles:
    """The files ``make_dev_certs`` wrote: the CA, the link's certificate, the clients'."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    clients: tuple[ClientFiles, ...] = ()

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file, in the order written."""
        clients = (p for c in self.clients for p in (c.key, c.public))
        return (self.ca_cert, self.ca_key, self.server_cert, self.server_key, *clients)

    def _of(self, role: str, suffix: str) -> tuple[Path, ...]:
        return tuple(c.public for c in self.clients if c.role == role and c.public.suffix == suffix)

    @property
    def node_keys(self) -> tuple[Path, ...]:
        """The nodes' private keys (of their certificates, or Ed25519 signing keys)."""
        return tuple(c.key for c in self.clients if c.role == "node")

    @property
    def node_certs(self) -> tuple[Path, ...]:
        """The nodes' client certificates (none with ``signing_keys``)."""
        return self._of("node", ".pem")

    @property
    def node_public_keys(self) -> tuple[Path, ...]:
        """The nodes' Ed25519 public keys (only with ``signing_keys``)."""
        return self._of("node", ".pub")

    @property
    def operator_keys(self) -> tuple[Path, ...]:
        """The operators' private keys."""
        return tuple(c.key for c in self.clients if c.role == "operator")

    @property
    def operator_certs(self) -> tuple[Path, ...]:
        """The operators' client certificates (none with ``signing_keys``)."""
        return self._of("operator", ".pem")

    @property
    def operator_public_keys(self) -> tuple[Path, ...]:
        """The operators' Ed25519 public keys (only with ``signing_keys``)."""
        return self._of("operator", ".pub")


def role_uri(role: str, name: str) -> str:
    """The SAN URI that names a client certificate's holder: ``pollinate:node:node1``."""
    return f"{URI_SCHEME}:{role}:{name}"


def make_dev_certs(
    out_dir: Path,
    hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
    nodes: int = 0,
    days: int = 365,
    *,
    operators: int = 0,
    signing_keys: bool = False,
) -> CertFiles:
    """Write a development CA, a link certificate for ``hostnames``, and clients' files.

    Each of ``nodes`` nodes (``node1`` ...) and ``operators`` operators (``operator1`` ...)
    gets a client certificate signed by the CA (``NAME.pem``, EKU clientAuth, SAN URI
    ``pollinate:ROLE:NAME``) and its key (``NAME.key``); with ``signing_keys`` an Ed25519
    key pair (``NAME.key``, ``NAME.pub``) for per-message signing instead. The CA, link and
    certificate keys are EC P-256 (private: PEM PKCS8, unencrypted). Private keys are made
    readable by their owner only (0o600). Nothing is written if any of the files exists.
    """
    names = _san_entries(hostnames)
    if not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    if min(nodes, operators) < 0:
        raise ConfigError(f"the numbers of nodes and operators must be 0 or more, not {nodes}")
    public = ".pub" if signing_keys else ".pem"
    clients = tuple(
        ClientFiles(role, f"{role}{i}", out_dir / f"{role}{i}.key", out_dir / f"{role}{i}{public}")
        for role, count in (("node", nodes), ("operator", operators))
        for i in range(1, count + 1)
    )
    files = CertFiles(
        ca_cert=out_dir / CA_CERT,
        ca_key=out_dir / CA_KEY,
        server_cert=out_dir / SERVER_CERT,
        server_key=out_dir / SERVER_KEY,
        clients=clients,
    )
    _check_free(out_dir, files.paths)
    start = dt.datetime.now(dt.timezone.utc) - _CLOCK_SKEW
    end = start + _CLOCK_SKEW + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key, start, end)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _server_certificate(server_key, ca_key, ca_cert, names, start, end)
    contents: dict[Path, tuple[bytes, bool]] = {
        files.ca_cert: (_cert_pem(ca_cert), False),
        files.ca_key: (_private_pem(ca_key), True),
        files.server_cert: (_cert_pem(server_cert), False),
        files.server_key: (_private_pem(server_key), True),
    }
    for client in clients:
        if signing_keys:
            signing = ed25519.Ed25519PrivateKey.generate()
            contents[client.key] = (_private_pem(signing), True)
            contents[client.public] = (_public_pem(signing.public_key()), False)
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        cert = client_certificate(key.public_key(), ca_key, ca_cert, client, start, end)
        contents[client.key] = (_private_pem(key), True)
        contents[client.public] = (_cert_pem(cert), False)
    for path, (data, private) in contents.items():
        _write(path, data, private=private)
    return files


def client_certificate(
    public: ec.EllipticCurvePublicKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    client: ClientFiles,
    start: dt.datetime,
    end: dt.datetime,
) -> x509.Certificate:
    """A client certificate for ``client``: EKU clientAuth, SAN URI ``pollinate:ROLE:NAME``."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, client.role),
            x509.NameAttribute(NameOID.COMMON_NAME, client.name),
        ]
    )
    uri = x509.UniformResourceIdentifier(role_uri(client.role, client.name))
    return (
        _builder(subject, ca_cert.subject, public, start, end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([uri]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def revoke(cert_dir: Path, names: Sequence[str]) -> tuple[Path, list[x509.Certificate]]:
    """Add the certificates ``cert_dir/NAME.pem`` to ``cert_dir/revoked.crl``, signed by the CA.

    Those already in the CRL stay. The file is replaced whole (write, then rename), so a
    link that reads it (``--revoked``) never sees half of it. Returns the CRL's path and the
    certificates revoked now.
    """
    if not names:
        raise ConfigError("name the certificates to revoke, e.g. node1 (for node1.pem)")
    ca_path, ca_key_path, crl_path = cert_dir / CA_CERT, cert_dir / CA_KEY, cert_dir / REVOKED
    ca_cert = load_certificates(ca_path, _read(ca_path, "the CA's certificate"))[0]
    ca_key = _load_private_key(ca_key_path, _read(ca_key_path, "the CA's private key"))
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or spki(ca_key.public_key()) != spki(
        ca_cert.public_key()
    ):
        raise ConfigError(f"{str(ca_key_path)!r} is not the private key of {str(ca_path)!r}")
    certs = [_issued(cert_dir, name, ca_cert) for name in names]
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - _CLOCK_SKEW)
        .next_update(max(now + dt.timedelta(days=365), ca_cert.not_valid_after_utc))
    )
    kept: set[int] = set()
    if crl_path.exists():
        for entry in load_crl(crl_path, _read(crl_path, "the CRL")):
            kept.add(entry.serial_number)
            builder = builder.add_revoked_certificate(entry)
    for cert in certs:
        if cert.serial_number not in kept:
            kept.add(cert.serial_number)
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.serial_number)
                .revocation_date(now)
                .build()
            )
    crl = builder.sign(ca_key, hashes.SHA256())
    temp = crl_path.with_name(f".{REVOKED}.tmp")
    temp.unlink(missing_ok=True)
    _write(temp, crl.public_bytes(serialization.Encoding.PEM), private=False)
    temp.replace(crl_path)
    return crl_path, certs


def _issued(cert_dir: Path, name: str, ca_cert: x509.Certificate) -> x509.Certificate:
    """The certificate ``name`` names (``node1``, ``node1.pem`` or a path), if the CA issued it."""
    path = Path(name) if name.endswith(".pem") else cert_dir / f"{name}.pem"
    if not path.is_absolute() and not path.exists():
        path = cert_dir / path.name
    cert = load_certificates(path, _read(path, "the certificate to revoke"))[0]
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(
            f"{str(path)!r} was not issued by the CA in {str(cert_dir)!r}: revoke it in the "
            "folder of the CA that issued it"
        ) from None
    return cert


def load_crl(path: Path, pem: bytes) -> x509.CertificateRevocationList:
    try:
        return x509.load_pem_x509_crl(pem)
    except ValueError:
        raise ConfigError(
            f"{str(path)!r} is not a PEM CRL (one that starts with -----BEGIN X509 CRL-----); "
            "`pollinate certs revoke --dir DIR NAME` writes one"
        ) from None


def server_credentials(cert_dir: Path) -> grpc.ServerCredentials:
    """The link's TLS credentials, from ``cert_dir/server.pem`` and ``cert_dir/server.key``.

    ``server.pem`` may hold the full chain (the link's certificate first, then intermediates).
    """
    return grpc.ssl_server_credentials([server_pair(cert_dir)])


def channel_credentials(
    root_cert: Path, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    """A node's or operator's TLS credentials: trust the link that ``root_cert`` signed.

    For mutual TLS, present the client certificate ``cert`` (with its private ``key``) too.
    """
    pem = _read(root_cert, "the root certificate")
    certs = load_certificates(root_cert, pem)
    if not any(_is_ca(cert) for cert in certs):
        subject = certs[0].subject.rfc4514_string()
        raise ConfigError(
            f"{str(root_cert)!r} is not a CA certificate (it is {subject!r}'s): give the "
            f"certificate of the CA that signed the link's certificate, e.g. ca.pem ({_MAKE_THEM})"
        )
    if cert is None and key is None:
        return grpc.ssl_channel_credentials(root_certificates=pem)
    if cert is None or key is None:
        raise ConfigError(
            "a client certificate goes with its key: give both --cert NAME.pem and --key NAME.key"
        )
    cert_pem, key_pem = _matching_pair(cert, key, "this client's")
    return grpc.ssl_channel_credentials(
        root_certificates=pem, private_key=key_pem, certificate_chain=cert_pem
    )


def server_pair(cert_dir: Path) -> tuple[bytes, bytes]:
    """The link's (key PEM, certificate chain PEM), from ``server.key`` and ``server.pem``."""
    cert_pem, key_pem = _matching_pair(cert_dir / SERVER_CERT, cert_dir / SERVER_KEY, "the link's")
    return key_pem, cert_pem


def ca_bundle(path: Path) -> bytes:
    """The PEM of the CA certificate(s) in ``path``; ConfigError if it holds none."""
    pem = _read(path, "the CA certificate")
    certs = load_certificates(path, pem)
    if not any(_is_ca(cert) for cert in certs):
        raise ConfigError(f"{str(path)!r} holds no CA certificate; {_MAKE_THEM}")
    return pem


def _matching_pair(cert_path: Path, key_path: Path, whose: str) -> tuple[bytes, bytes]:
    """A certificate's PEM and its private key's, checked to belong together."""
    cert_pem = _read(cert_path, f"{whose} certificate")
    key_pem = _read(key_path, f"{whose} private key")
    certs = load_certificates(cert_path, cert_pem)
    key = _load_private_key(key_path, key_pem)
    if spki(key.public_key()) != spki(certs[0].public_key()):
        raise ConfigError(
            f"{str(key_path)!r} is not the private key of the certificate {str(cert_path)!r}: "
            f"put the matching pair there ({_MAKE_THEM})"
        )
    return cert_pem, key_pem


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


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


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


def spki(key: PublicKeyTypes) -> bytes:
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


def load_certificates(path: Path, pem: bytes) -> list[x509.Certificate]:
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
