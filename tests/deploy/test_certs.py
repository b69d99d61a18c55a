import datetime as dt
import ipaddress
import stat
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import grpc
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from pollinate.cli._main import cli
from pollinate.deploy._certs import channel_credentials, make_dev_certs, server_credentials
from pollinate.errors import ConfigError

ECHO = "/pollinate.test.Echo/Echo"
TIMEOUT_S = 10


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_dev_certs(tmp_path_factory.mktemp("certs"), nodes=2, operators=1)


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    return make_dev_certs(tmp_path_factory.mktemp("signing"), nodes=2, signing_keys=True)


@contextmanager
def _echo_server(cert_dir):
    """A TLS gRPC server on 127.0.0.1 that echoes raw bytes; yields its port, then stops it."""
    handler = grpc.method_handlers_generic_handler(
        "pollinate.test.Echo",
        {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)},
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        server = grpc.server(pool)
        server.add_generic_rpc_handlers((handler,))
        port = server.add_secure_port("127.0.0.1:0", server_credentials(cert_dir))
        server.start()
        try:
            yield port
        finally:
            server.stop(None)


@pytest.fixture
def echo_port(certs):
    with _echo_server(certs.ca_cert.parent) as port:
        yield port


def _echo(channel, payload=b"pollen"):
    return channel.unary_unary(ECHO)(payload, timeout=TIMEOUT_S)


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_writes_every_file_with_private_keys_for_the_owner_only(certs):
    names = [p.name for p in certs.paths]
    assert names == [
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "node1.key",
        "node1.pem",
        "node2.key",
        "node2.pem",
        "operator1.key",
        "operator1.pem",
    ]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in certs.paths}
    assert all(modes[name] == 0o600 for name in names if name.endswith(".key"))
    assert all(not modes[name] & 0o022 for name in names)


def test_server_certificate_is_signed_by_the_ca_and_covers_the_hostnames(certs):
    ca, server = _cert(certs.ca_cert), _cert(certs.server_cert)
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert isinstance(server.public_key(), ec.EllipticCurvePublicKey)
    now = dt.datetime.now(dt.timezone.utc)
    assert server.not_valid_before_utc <= now < server.not_valid_after_utc
    assert server.not_valid_after_utc - now > dt.timedelta(days=364)


def test_client_certificates_name_their_role_and_are_for_client_auth_only(certs):
    ca = _cert(certs.ca_cert)
    clients = [
        *zip(certs.node_certs, certs.node_keys, strict=True),
        *zip(certs.operator_certs, certs.operator_keys, strict=True),
    ]
    uris = []
    for cert_path, key_path in clients:
        cert = _cert(cert_path)
        cert.verify_directly_issued_by(ca)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert key.public_key() == cert.public_key()
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris += san.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == ["pollinate:node:node1", "pollinate:node:node2", "pollinate:operator:operator1"]
    assert certs.node_public_keys == ()


def test_signing_keys_are_ed25519_pairs_in_pem(signing):
    certs = signing
    assert [p.name for p in certs.paths][4:] == ["node1.key", "node1.pub", "node2.key", "node2.pub"]
    assert certs.node_certs == ()
    for key_path, pub_path in zip(certs.node_keys, certs.node_public_keys, strict=True):
        private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        public = serialization.load_pem_public_key(pub_path.read_bytes())
        assert isinstance(private, ed25519.Ed25519PrivateKey)
        assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert pub_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
        assert private.public_key() == public
    first, second = (p.read_bytes() for p in certs.node_public_keys)
    assert first != second


def test_ip_literals_become_ip_addresses_and_names_dns_names(tmp_path):
    files = make_dev_certs(tmp_path, ["Link.Example.org", "::1", "[fe80::1]", "10.0.0.5", "::1"])
    san = _cert(files.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["link.example.org"]
    assert san.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("fe80::1"),
        ipaddress.ip_address("10.0.0.5"),
    ]


@pytest.mark.parametrize("hostname", ["link.example.org:9092", "", "bad name", "-x.org"])
def test_a_bad_hostname_is_refused(tmp_path, hostname):
    with pytest.raises(ConfigError, match="is not a hostname"):
        make_dev_certs(tmp_path, [hostname])
    assert not list(tmp_path.iterdir())


def test_refuses_to_overwrite_and_writes_nothing(tmp_path):
    (tmp_path / "node2.pem").write_text("mine")
    with pytest.raises(ConfigError, match=r"node2\.pem' already exists: choose another --out"):
        make_dev_certs(tmp_path, nodes=2)
    assert [p.name for p in tmp_path.iterdir()] == ["node2.pem"]
    assert (tmp_path / "node2.pem").read_text() == "mine"


def test_tls_round_trip_with_the_ca_as_root(certs, echo_port):
    credentials = channel_credentials(certs.ca_cert)
    with grpc.secure_channel(f"127.0.0.1:{echo_port}", credentials) as channel:
        assert _echo(channel, b"\x00pollen\xff") == b"\x00pollen\xff"


def test_another_cas_root_is_refused(tmp_path, echo_port):
    other = make_dev_certs(tmp_path)
    credentials = channel_credentials(other.ca_cert)
    with (
        grpc.secure_channel(f"127.0.0.1:{echo_port}", credentials) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        _echo(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_plain_text_to_the_tls_port_fails(echo_port):
    with (
        grpc.insecure_channel(f"127.0.0.1:{echo_port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        _echo(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_for_another_hostname_is_refused(certs, echo_port):
    options = [("grpc.ssl_target_name_override", "link.test")]
    credentials = channel_credentials(certs.ca_cert)
    with (
        grpc.secure_channel(f"127.0.0.1:{echo_port}", credentials, options) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        _echo(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_dns_name_in_the_certificate_is_accepted(tmp_path):
    files = make_dev_certs(tmp_path, ["link.test"])
    options = [("grpc.ssl_target_name_override", "link.test")]
    credentials = channel_credentials(files.ca_cert)
    with (
        _echo_server(tmp_path) as port,
        grpc.secure_channel(f"127.0.0.1:{port}", credentials, options) as channel,
    ):
        assert _echo(channel) == b"pollen"


def test_missing_files_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"server\.pem' does not exist; `pollinate certs --out"):
        server_credentials(tmp_path)
    with pytest.raises(ConfigError, match=r"ca\.pem' does not exist; `pollinate certs --out"):
        channel_credentials(tmp_path / "ca.pem")


def test_files_that_are_not_pem_name_the_file(tmp_path, certs):
    (tmp_path / "server.pem").write_bytes(certs.server_cert.read_bytes())
    (tmp_path / "server.key").write_text("not a key")
    with pytest.raises(
        ConfigError, match=r"server\.key' is not a PEM private key.*pollinate certs"
    ):
        server_credentials(tmp_path)
    (tmp_path / "ca.pem").write_bytes(certs.ca_key.read_bytes())
    with pytest.raises(ConfigError, match=r"ca\.pem' is not a PEM certificate.*pollinate certs"):
        channel_credentials(tmp_path / "ca.pem")


def test_a_key_that_does_not_match_the_certificate_is_refused(tmp_path, certs):
    other = make_dev_certs(tmp_path / "other")
    (tmp_path / "server.pem").write_bytes(certs.server_cert.read_bytes())
    (tmp_path / "server.key").write_bytes(other.server_key.read_bytes())
    with pytest.raises(ConfigError, match=r"server\.key' is not the private key of"):
        server_credentials(tmp_path)


def test_the_servers_certificate_as_root_is_refused(certs):
    with pytest.raises(ConfigError, match=r"server\.pem' is not a CA certificate.*ca\.pem"):
        channel_credentials(certs.server_cert)


def test_cli_writes_the_files_and_says_what_next(tmp_path):
    out = tmp_path / "certs"
    args = ["certs", "--out", str(out), "--nodes", "2", "--operators", "1"]
    result = CliRunner().invoke(cli, [*args, "--hostname", "link.test"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    names = {"ca.pem", "ca.key", "server.pem", "server.key", "node1.key", "node1.pem"}
    names |= {"node2.key", "node2.pem", "operator1.key", "operator1.pem"}
    assert {p.name for p in out.iterdir()} == names
    assert "for link.test; valid 365 days" in result.output
    assert "development certificates, not for production" in result.output
    assert f"pollinate link --certs {out} --mtls --db link.db" in result.output
    assert (
        f"pollinate node --link HOST:9400 --root-cert {out / 'ca.pem'} "
        f"--cert {out / 'node1.pem'} --key {out / 'node1.key'}"
    ) in result.output


def test_cli_writes_signing_keys_when_asked(tmp_path):
    out = tmp_path / "certs"
    args = ["certs", "--out", str(out), "--nodes", "1", "--signing-keys"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert {"node1.key", "node1.pub"} <= {p.name for p in out.iterdir()}
    assert f"pollinate link --certs {out} --node-keys {out} --db link.db" in result.output
    assert f"--root-cert {out / 'ca.pem'} --key {out / 'node1.key'}" in result.output


def test_cli_revoke_adds_certificates_to_a_crl_the_ca_signed(tmp_path, certs):
    out = tmp_path / "certs"
    make_dev_certs(out, nodes=2)
    runner = CliRunner()
    for name in ("node1", "node2", "node1"):  # revoking twice lists it once
        result = runner.invoke(cli, ["certs", "revoke", "--dir", str(out), name])
        assert result.exit_code == 0, result.output
        assert f"revoked {name} (serial" in result.output
    crl = x509.load_pem_x509_crl((out / "revoked.crl").read_bytes())
    assert crl.is_signature_valid(_cert(out / "ca.pem").public_key())
    serials = sorted(entry.serial_number for entry in crl)
    assert serials == sorted(_cert(out / f"node{i}.pem").serial_number for i in (1, 2))
    foreign = runner.invoke(cli, ["certs", "revoke", "--dir", str(out), str(certs.node_certs[0])])
    assert foreign.exit_code == 1
    assert "was not issued by the CA in" in foreign.output


def test_cli_refuses_to_overwrite_with_one_error_line(tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["certs", "--out", str(tmp_path)]).exit_code == 0
    result = runner.invoke(cli, ["certs", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: '{tmp_path / 'ca.pem'}' already exists (and 3 more of the files to write): "
        "choose another --out folder, or delete it"
    ]
