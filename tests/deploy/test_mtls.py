"""Mutual TLS on the link: node and operator certificates, refusals, revocation, rotation."""

import datetime as dt
import ipaddress
import json
import logging
import shutil
import socket
import ssl
import threading

import grpc
import numpy as np
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pollinate import ArrayRecord, FedAvg
from pollinate.cli._main import cli
from pollinate.deploy import (
    Backoff,
    ControlClient,
    Link,
    channel_credentials,
    make_dev_certs,
    revoke,
    run_node,
    serve_link,
)
from pollinate.deploy._certs import ClientFiles, _server_certificate, client_certificate
from pollinate.deploy._frames import Frame, decode_frame, encode_frame
from pollinate.deploy._link import (
    CHANNEL_METHOD,
    GET_APP_METHOD,
    HELLO_KEY,
    REGISTER_METHOD,
    _new_node_id,
)
from pollinate.deploy._peers import ClientCerts, ServerTLS
from pollinate.errors import ConfigError, Forbidden

from .node_apps import app as node_app
from .submitted import write_app

MODEL = ArrayRecord({"w": np.zeros((8, 8))})
TIMEOUT_S = 10


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A federation's files (3 nodes, 1 operator), another CA's, and an expired node cert."""
    root = tmp_path_factory.mktemp("pki")
    ours = make_dev_certs(root / "ours", nodes=3, operators=1)
    theirs = make_dev_certs(root / "theirs", nodes=1)
    ca_key = serialization.load_pem_private_key(ours.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ours.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    client = ClientFiles("node", "old", root / "old.key", root / "old.pem")
    cert = client_certificate(key.public_key(), ca_key, ca_cert, client, old, old + dt.timedelta(1))
    client.public.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    client.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ours, theirs, client


def _copy(files, tmp_path):
    """The federation's folder copied, so a test may revoke or rotate in it."""
    folder = tmp_path / "certs"
    shutil.copytree(files.ca_cert.parent, folder)
    return folder


def _creds(ours, cert=None, key=None):
    return channel_credentials(ours.ca_cert, cert, key)


def _node_creds(files, i):
    return _creds(files, files.node_certs[i], files.node_keys[i])


def _register(port, credentials, header=None):
    channel = grpc.secure_channel(f"127.0.0.1:{port}", credentials)
    request = encode_frame(Frame("register", header or {"node_config": {}}))
    answer = channel.unary_unary(REGISTER_METHOD)(request, timeout=TIMEOUT_S)
    return channel, decode_frame(answer).header


@pytest.fixture
def mtls_link(pki, tmp_path):
    """A link requiring client certificates of ``pki``'s CA, with a CRL; yields (port, folder)."""
    ours = pki[0]
    folder = _copy(ours, tmp_path)
    revoke(folder, ["node3"])  # revoked before the link starts
    ports = []
    with serve_link(
        "127.0.0.1:0",
        certs=folder,
        mtls=True,
        revoked=folder / "revoked.crl",
        on_listening=ports.append,
    ) as runs:
        runs.start()
        yield ports[0], folder


def test_a_node_certificate_registers_with_an_id_bound_to_its_key(pki, mtls_link):
    ours = pki[0]
    port, _ = mtls_link
    channel, first = _register(port, _node_creds(ours, 0))
    _, again = _register(port, _node_creds(ours, 0))  # no id or token: the certificate alone
    assert again["node_id"] == first["node_id"]
    cert = x509.load_pem_x509_certificate(ours.node_certs[0].read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert first["node_id"] == _new_node_id({}, spki)  # ids stay the same from run to run
    channel.close()


@pytest.mark.parametrize("who", ["no certificate", "another CA's", "expired", "plain text"])
def test_callers_without_a_valid_certificate_fail_the_handshake(pki, mtls_link, who):
    ours, theirs, old = pki
    port, _ = mtls_link
    address = f"127.0.0.1:{port}"
    credentials = {
        "no certificate": _creds(ours),
        "another CA's": _creds(ours, theirs.node_certs[0], theirs.node_keys[0]),
        "expired": _creds(ours, old.public, old.key),
        "plain text": None,
    }[who]
    channel = (
        grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    )
    request = encode_frame(Frame("register", {"node_config": {}}))
    with pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary(REGISTER_METHOD)(request, timeout=TIMEOUT_S)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()


def test_a_node_without_a_certificate_is_told_and_gives_up(pki, mtls_link, caplog):
    port, _ = mtls_link
    with (
        caplog.at_level(logging.WARNING, logger="pollinate.node"),
        pytest.raises(ConfigError, match=r"requires a client certificate.*2 times in a row"),
    ):
        run_node(
            f"127.0.0.1:{port}",
            node_app,
            credentials=_creds(pki[0]),
            backoff=Backoff(initial_s=0.01, max_s=0.02),
            max_handshake_failures=2,
        )


def test_a_node_certificate_cannot_act_as_another_node(pki, mtls_link):
    ours = pki[0]
    port, _ = mtls_link
    victim, me = _register(port, _node_creds(ours, 0))
    thief, _ = _register(port, _node_creds(ours, 1))
    stolen = {k: me[k] for k in ("node_id", "token")}
    _, answer = _register(port, _node_creds(ours, 1), {"node_config": {}, **stolen})
    assert answer["node_id"] != me["node_id"]  # its own id, not the victim's
    hello = encode_frame(Frame("hello", stolen))
    with pytest.raises(grpc.RpcError) as refused:
        stream = thief.stream_stream(CHANNEL_METHOD)(iter(()), metadata=[(HELLO_KEY, hello)])
        list(stream)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    app_request = encode_frame(Frame("get_app", {**stolen, "digest": "0" * 64}))
    with pytest.raises(grpc.RpcError) as refused:
        list(thief.unary_stream(GET_APP_METHOD)(app_request, timeout=TIMEOUT_S))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    victim.close()
    thief.close()


def test_control_needs_an_operator_certificate_and_fleet_a_nodes(pki, mtls_link):
    ours = pki[0]
    port, _ = mtls_link
    address = f"127.0.0.1:{port}"
    operator = _creds(ours, ours.operator_certs[0], ours.operator_keys[0])
    with ControlClient(address, operator) as client:
        assert client.runs() == []
    with (
        ControlClient(address, _node_creds(ours, 0)) as client,
        pytest.raises(Forbidden, match=r"node certificate 'node1'.*may not make Control calls"),
    ):
        client.runs()
    with pytest.raises(grpc.RpcError) as refused:
        _register(port, operator)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may not make node (Fleet) calls" in refused.value.details()


def test_a_certificate_revoked_while_the_link_runs_is_refused_and_its_stream_dropped(
    pki, mtls_link
):
    ours = pki[0]
    port, folder = mtls_link
    with pytest.raises(grpc.RpcError, match=r"node3.*is revoked") as refused:
        _register(port, _node_creds(ours, 2))  # revoked before the link started
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel, me = _register(port, _node_creds(ours, 1))
    hello = encode_frame(Frame("hello", {k: me[k] for k in ("node_id", "token")}))
    quiet = threading.Event()
    stream = channel.stream_stream(CHANNEL_METHOD)(
        iter(lambda: quiet.wait() and b"", b""), metadata=[(HELLO_KEY, hello)]
    )
    stream.initial_metadata()  # admitted
    revoke(folder, ["node2"])
    with pytest.raises(grpc.RpcError) as dropped:
        list(stream)
    assert dropped.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "is revoked" in dropped.value.details()
    with pytest.raises(grpc.RpcError, match=r"node2.*is revoked"):
        _register(port, _node_creds(ours, 1))  # its next call
    quiet.set()
    channel.close()


def test_only_listed_node_certificates_are_admitted(pki, tmp_path):
    ours = pki[0]
    folder = _copy(ours, tmp_path)
    ports = []
    with serve_link(
        "127.0.0.1:0",
        certs=folder,
        node_certs=[folder / "node1.pem", folder / "node2.pem"],  # implies mtls
        on_listening=ports.append,
    ):
        channel, _ = _register(ports[0], _node_creds(ours, 0))
        channel.close()
        with pytest.raises(grpc.RpcError, match="not on this link's list") as refused:
            _register(ports[0], _node_creds(ours, 2))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_three_nodes_with_certificates_run_rounds(pki):
    ours = pki[0]
    folder = ours.ca_cert.parent
    link = Link(
        "127.0.0.1:0",
        credentials=ServerTLS(folder, ours.ca_cert).credentials(),
        clients=ClientCerts(ours.ca_cert),
        chunk_size=2048,
        heartbeat_s=0.2,
    )
    link.start()
    nodes = [
        threading.Thread(
            target=run_node,
            args=(f"127.0.0.1:{link.port}", node_app),
            kwargs={
                "node_config": {"partition-id": p},
                "credentials": _node_creds(ours, p),
                "chunk_size": 2048,
                "backoff": Backoff(initial_s=0.05, max_s=0.2, give_up_s=10),
            },
            daemon=True,
        )
        for p in range(3)
    ]
    try:
        for node in nodes:
            node.start()
        grid = link.grid(1, {})
        grid.wait_for_nodes(3, timeout_s=20)
        result = FedAvg(fraction_evaluate=0.0).start(grid, MODEL, num_rounds=2)
        np.testing.assert_array_equal(result.arrays["w"].numpy(), np.full((8, 8), 4.0))
    finally:
        link.stop(grace_s=0.5)
    for node in nodes:
        node.join(10)


def _served_certificate(port, ours):
    """The certificate the link presents to a new connection now (DER)."""
    context = ssl.create_default_context(cafile=str(ours.ca_cert))
    context.load_cert_chain(ours.operator_certs[0], ours.operator_keys[0])
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.getpeercert(binary_form=True)


def test_a_rotated_server_certificate_is_served_to_new_connections_without_a_restart(
    pki, mtls_link
):
    ours = pki[0]
    port, folder = mtls_link
    before = _served_certificate(port, ours)
    assert before == _der(folder / "server.pem")
    ca_key = serialization.load_pem_private_key(ours.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ours.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    names = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = _server_certificate(key, ca_key, ca_cert, names, now, now + dt.timedelta(days=2))
    (folder / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    after = _served_certificate(port, ours)
    assert after == cert.public_bytes(serialization.Encoding.DER) != before
    operator = _creds(ours, ours.operator_certs[0], ours.operator_keys[0])
    with ControlClient(f"127.0.0.1:{port}", operator) as client:
        assert client.runs() == []


def _der(path):
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"mtls": True, "require_signatures": True}, "choose one kind of identity"),
        ({"node_certs": "x", "control_keys": "x"}, "choose one kind of identity"),
        ({"revoked": "missing.crl"}, "--revoked goes with --mtls"),
        ({"mtls": True, "revoked": "missing.crl"}, r"cannot read the CRL .*certs revoke"),
    ],
)
def test_bad_combinations_and_files_are_one_clear_error(pki, tmp_path, options, says):
    options = {k: tmp_path / v if isinstance(v, str) else v for k, v in options.items()}
    with (
        pytest.raises(ConfigError, match=says),
        serve_link("127.0.0.1:0", certs=pki[0].ca_cert.parent, **options),
    ):
        pass


def test_a_half_written_rotation_keeps_the_certificate_the_link_has(pki, tmp_path, caplog):
    folder = _copy(pki[0], tmp_path)
    tls = ServerTLS(folder, folder / "ca.pem")
    (folder / "server.pem").write_bytes(pki[1].server_cert.read_bytes())  # not server.key's
    with caplog.at_level(logging.WARNING, logger="pollinate.link"):
        assert tls._fetch() is None
        assert tls._fetch() is None  # said once, not at every connection
    assert caplog.text.count("ignored the changed certificate files") == 1
    assert "is not the private key of the certificate" in caplog.text
    (folder / "server.key").write_bytes(pki[1].server_key.read_bytes())
    assert tls._fetch() is not None  # the pair matches again: taken


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_operators_use_their_certificate_from_the_cli_and_the_federation(pki, mtls_link, tmp_path):
    ours = pki[0]
    port, _ = mtls_link
    link = ["--link", f"127.0.0.1:{port}", "--root-cert", ours.ca_cert]
    operator = ["--cert", ours.operator_certs[0], "--key", ours.operator_keys[0]]
    listed = _invoke("ls", *link, *operator, "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == []
    as_node = _invoke("ls", *link, "--cert", ours.node_certs[0], "--key", ours.node_keys[0])
    assert as_node.exit_code == 1
    assert "node certificate 'node1'" in as_node.output
    assert "may not make Control calls" in as_node.output
    app = write_app(tmp_path / "app", port=port)
    pyproject = app / "pyproject.toml"
    text = pyproject.read_text().replace("insecure = true", f'root-cert = "{ours.ca_cert}"')
    text += f'cert = "{ours.operator_certs[0]}"\nkey = "{ours.operator_keys[0]}"\n'
    pyproject.write_text(text)
    submitted = _invoke("run", app, "prod", "--json")
    assert submitted.exit_code == 0, submitted.output
    run = json.loads(submitted.stdout.splitlines()[-1])
    assert run["status"] in ("queued", "running")
    without_key = _invoke("ls", *link, "--cert", ours.operator_certs[0])
    assert without_key.exit_code == 1
    assert "--cert goes with --key" in without_key.output


def test_a_node_given_half_of_a_certificate_pair_is_one_clear_error(pki):
    ours = pki[0]
    node = ["node", "--link", "127.0.0.1:9", "--root-cert", ours.ca_cert, "--once"]
    result = _invoke(*node, "--cert", ours.node_certs[0])
    assert result.exit_code == 1 and "--cert goes with --key" in result.output
    result = _invoke(*node, "--key", ours.node_keys[0])  # a certificate's key, as a signing key
    assert result.exit_code == 1 and "a client certificate's key goes with --cert" in result.output


def test_node_certs_that_are_not_client_certificates_are_named(pki, tmp_path):
    folder = _copy(pki[0], tmp_path)
    intruder = tmp_path / "server-copy.pem"
    intruder.write_bytes((folder / "server.pem").read_bytes())  # a link's certificate, no role
    with (
        pytest.raises(ConfigError, match=r"server-copy\.pem' is not a client certificate"),
        serve_link("127.0.0.1:0", certs=folder, node_certs=[folder, intruder]),
    ):
        pass
