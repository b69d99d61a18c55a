import dataclasses
import hashlib
import stat
import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pollinate.deploy._identity import (
    NodeKey,
    Signature,
    Verifier,
    body_digest,
    key_id,
    load_public_keys,
    sign,
)
from pollinate.errors import AuthError, ConfigError

METHOD = "/pollinate.Link/Push"
NOW = 1_700_000_000.0
BODY = body_digest(b"hello ", b"world")


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def key():
    return NodeKey.generate()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def verifier(clock):
    return Verifier(clock=clock)


def write_pub(path, key):
    path.write_bytes(key.public_pem())
    return path


# signing and verifying


def test_round_trip_returns_the_signing_key(key, verifier):
    signature = sign(key, METHOD, BODY, now=NOW)
    assert verifier.verify(METHOD, BODY, signature) == key.public_key


def test_round_trip_through_grpc_metadata(key, verifier):
    metadata = sign(key, METHOD, BODY, now=NOW).to_metadata()
    assert all(k == k.lower() and k.startswith("pollinate-") for k, _ in metadata)
    assert all(isinstance(v, bytes) == k.endswith("-bin") for k, v in metadata)
    other = [("user-agent", "grpc-python"), *metadata]
    assert verifier.verify_metadata(METHOD, BODY, other) == key.public_key


def test_body_digest_does_not_depend_on_chunking():
    assert body_digest(b"hello ", memoryview(b"world")) == hashlib.sha256(b"hello world").digest()
    assert body_digest(b"hel", b"lo wor", b"ld") == BODY


def test_each_signature_has_a_fresh_nonce(key):
    assert sign(key, METHOD, BODY, now=NOW).nonce != sign(key, METHOD, BODY, now=NOW).nonce


def test_altered_body_digest_is_refused(key, verifier):
    signature = sign(key, METHOD, BODY, now=NOW)
    with pytest.raises(AuthError, match="bad signature"):
        verifier.verify(METHOD, body_digest(b"hello there"), signature)


def test_altered_method_is_refused(key, verifier):
    signature = sign(key, METHOD, BODY, now=NOW)
    with pytest.raises(AuthError, match="bad signature"):
        verifier.verify("/pollinate.Link/Pull", BODY, signature)


def test_altered_timestamp_is_refused(key, verifier):
    signature = sign(key, METHOD, BODY, now=NOW)
    moved = dataclasses.replace(signature, timestamp_ms=signature.timestamp_ms + 1)
    with pytest.raises(AuthError, match="bad signature"):
        verifier.verify(METHOD, BODY, moved)


def test_altered_nonce_is_refused(key, verifier):
    signature = sign(key, METHOD, BODY, now=NOW)
    nonce = bytes([signature.nonce[0] ^ 1]) + signature.nonce[1:]
    with pytest.raises(AuthError, match="bad signature"):
        verifier.verify(METHOD, BODY, dataclasses.replace(signature, nonce=nonce))


def test_signature_by_another_key_claiming_this_key_is_refused(key, verifier):
    forged = sign(NodeKey.generate(), METHOD, BODY, now=NOW)
    claimed = dataclasses.replace(forged, public_key=key.public_key)
    with pytest.raises(AuthError, match="bad signature"):
        verifier.verify(METHOD, BODY, claimed)


def test_replayed_signature_is_refused(key, verifier):
    signature = sign(key, METHOD, BODY, now=NOW)
    verifier.verify(METHOD, BODY, signature)
    with pytest.raises(AuthError, match="replayed"):
        verifier.verify(METHOD, BODY, signature)


def test_replay_after_the_window_is_refused_as_stale(key, verifier, clock):
    signature = sign(key, METHOD, BODY, now=NOW)
    verifier.verify(METHOD, BODY, signature)
    clock.now += 61
    with pytest.raises(AuthError, match="stale"):
        verifier.verify(METHOD, BODY, signature)


def test_a_failed_signature_does_not_burn_the_nonce(key, verifier):
    signature = sign(key, METHOD, BODY, now=NOW)
    with pytest.raises(AuthError, match="bad signature"):
        verifier.verify(METHOD, body_digest(b"other"), signature)
    assert verifier.verify(METHOD, BODY, signature) == key.public_key


def test_stale_timestamp_is_refused(key, verifier):
    signature = sign(key, METHOD, BODY, now=NOW - 61)
    with pytest.raises(AuthError, match=r"stale request: signed 61\.0 s ago"):
        verifier.verify(METHOD, BODY, signature)


def test_future_timestamp_is_refused(key, verifier):
    signature = sign(key, METHOD, BODY, now=NOW + 61)
    with pytest.raises(AuthError, match="from the future"):
        verifier.verify(METHOD, BODY, signature)


def test_timestamps_within_the_skew_are_accepted(key, clock):
    verifier = Verifier(max_skew_s=5, clock=clock)
    for offset in (-4.9, 4.9):
        verifier.verify(METHOD, BODY, sign(key, METHOD, BODY, now=NOW + offset))


def test_unregistered_key_is_refused(key, clock):
    verifier = Verifier(registered={NodeKey.generate().public_key}, clock=clock)
    with pytest.raises(AuthError, match=f"{key.node_key_id} is not registered"):
        verifier.verify(METHOD, BODY, sign(key, METHOD, BODY, now=NOW))


def test_registered_key_is_accepted(key, clock):
    verifier = Verifier(registered={key.public_key}, clock=clock)
    assert verifier.verify(METHOD, BODY, sign(key, METHOD, BODY, now=NOW)) == key.public_key


# malformed metadata


@pytest.mark.parametrize(
    "missing",
    [
        "pollinate-auth-version",
        "pollinate-public-key-bin",
        "pollinate-timestamp-ms",
        "pollinate-nonce-bin",
        "pollinate-signature-bin",
    ],
)
def test_missing_metadata_is_an_auth_error(key, missing):
    metadata = [(k, v) for k, v in sign(key, METHOD, BODY).to_metadata() if k != missing]
    with pytest.raises(AuthError, match=f"{missing} missing"):
        Signature.from_metadata(metadata)


def test_no_metadata_at_all_is_an_auth_error():
    with pytest.raises(AuthError, match="not signed"):
        Signature.from_metadata([])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pollinate-public-key-bin", b"\x01" * 31, "must be 32 bytes, got 31 bytes"),
        ("pollinate-nonce-bin", b"\x01" * 17, "must be 16 bytes, got 17 bytes"),
        ("pollinate-signature-bin", b"", "must be 64 bytes, got 0 bytes"),
        ("pollinate-nonce-bin", "a" * 16, "must be 16 bytes, got a str"),
        ("pollinate-timestamp-ms", "-5", "decimal digits"),
        ("pollinate-timestamp-ms", "12e3", "decimal digits"),
        ("pollinate-timestamp-ms", "9" * 19, "non-negative integer"),
        ("pollinate-auth-version", "2", "unsupported pollinate-auth-version"),
    ],
)
def test_malformed_metadata_is_an_auth_error(key, field, value, message):
    metadata = [(k, value if k == field else v) for k, v in sign(key, METHOD, BODY).to_metadata()]
    with pytest.raises(AuthError, match=message):
        Signature.from_metadata(metadata)


def test_duplicated_metadata_is_an_auth_error(key):
    metadata = sign(key, METHOD, BODY).to_metadata()
    with pytest.raises(AuthError, match="more than once"):
        Signature.from_metadata([*metadata, metadata[3]])


def test_text_values_may_arrive_as_bytes(key):
    signature = sign(key, METHOD, BODY)
    metadata = [(k, v.encode() if isinstance(v, str) else v) for k, v in signature.to_metadata()]
    assert Signature.from_metadata(metadata) == signature


def test_an_invalid_public_key_point_is_a_bad_signature(key, verifier):
    signature = dataclasses.replace(sign(key, METHOD, BODY, now=NOW), public_key=b"\xff" * 32)
    with pytest.raises(AuthError, match="bad signature"):
        verifier.verify(METHOD, BODY, signature)


# the replay cache stays bounded


def test_nonce_cache_expires_with_the_window(key, clock):
    verifier = Verifier(max_skew_s=1, clock=clock)
    for _ in range(500):
        clock.now += 0.01  # 100 requests per second, 1 s window
        verifier.verify(METHOD, BODY, sign(key, METHOD, BODY, now=clock.now))
    assert 95 <= verifier.cached_nonces <= 101


def test_nonce_cache_is_capped_and_still_refuses_replays(key, clock):
    verifier = Verifier(clock=clock, max_nonces=50)
    signatures = []
    for i in range(200):
        signatures.append(sign(key, METHOD, BODY, now=NOW - 30 + i / 1000))
        verifier.verify(METHOD, BODY, signatures[-1])
        assert verifier.cached_nonces <= 50
    for signature in (signatures[0], signatures[100], signatures[-1]):
        with pytest.raises(AuthError, match=r"replayed|too old for the replay check"):
            verifier.verify(METHOD, BODY, signature)
    assert verifier.verify(METHOD, BODY, sign(key, METHOD, BODY, now=NOW)) == key.public_key


def test_verifier_refuses_bad_settings():
    with pytest.raises(ConfigError, match="max_skew_s"):
        Verifier(max_skew_s=0)
    with pytest.raises(ConfigError, match="max_nonces"):
        Verifier(max_nonces=0)


def test_verify_is_thread_safe(clock):
    verifier = Verifier(clock=clock)
    keys = [NodeKey.generate() for _ in range(8)]
    signed = [(k, sign(k, METHOD, BODY, now=NOW)) for k in keys for _ in range(50)]
    accepted, errors = [], []

    def work(batch):
        for k, signature in batch:
            try:
                accepted.append(verifier.verify(METHOD, BODY, signature) == k.public_key)
            except AuthError as exc:  # pragma: no cover - the test fails below
                errors.append(exc)

    # every signature twice, spread over threads: each must pass exactly once
    batches = [signed[i::8] + signed[(i + 1) % 8 :: 8] for i in range(8)]
    threads = [threading.Thread(target=work, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == len(signed) and all(accepted)
    assert len(errors) == len(signed) and all("replayed" in str(e) for e in errors)
    assert verifier.cached_nonces == len(signed)


# key files


def test_key_save_load_round_trip(tmp_path, key):
    path = tmp_path / "node1.key"
    key.save(path)
    loaded = NodeKey.load(path)
    assert loaded.public_key == key.public_key
    assert loaded.node_key_id == key.node_key_id == key_id(key.public_key)
    assert len(key.public_key) == 32 and len(key.node_key_id) == 16
    assert Verifier().verify(METHOD, BODY, sign(loaded, METHOD, BODY)) == key.public_key


def test_saved_key_is_private_to_its_owner(tmp_path, key):
    path = tmp_path / "node1.key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_refuses_to_overwrite(tmp_path, key):
    path = tmp_path / "node1.key"
    path.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        key.save(path)
    assert path.read_bytes() == b"precious"


def test_repr_does_not_show_the_private_key(key):
    assert repr(key) == f"NodeKey(id={key.node_key_id})"


def test_load_missing_key_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "nope.key"
    with pytest.raises(ConfigError, match="pollinate certs --out DIR --nodes N") as info:
        NodeKey.load(path)
    assert str(path) in str(info.value)


def test_load_garbage_names_the_file(tmp_path):
    path = tmp_path / "node1.key"
    path.write_bytes(b"not a key at all\n")
    with pytest.raises(ConfigError, match="not a PEM private key") as info:
        NodeKey.load(path)
    assert str(path) in str(info.value)


def test_load_a_public_key_says_so(tmp_path, key):
    path = write_pub(tmp_path / "node1.pub", key)
    with pytest.raises(ConfigError, match=r"holds a public key \(.pub\)"):
        NodeKey.load(path)


def test_load_a_non_ed25519_key_names_the_file(tmp_path):
    path = tmp_path / "ec.key"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(
        ConfigError, match="not an Ed25519 signing key: a client certificate"
    ) as info:
        NodeKey.load(path)
    assert str(path) in str(info.value)


def test_load_an_encrypted_key_is_refused(tmp_path):
    path = tmp_path / "node1.key"
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ConfigError, match="is encrypted"):
        NodeKey.load(path)


# the registration list


def test_load_public_keys_from_a_folder(tmp_path):
    keys = [NodeKey.generate() for _ in range(3)]
    for i, k in enumerate(keys):
        write_pub(tmp_path / f"node{i}.pub", k)
    keys[0].save(tmp_path / "node0.key")  # private keys beside them are not read
    assert load_public_keys(tmp_path) == {k.public_key for k in keys}


def test_load_public_keys_from_files(tmp_path):
    keys = [NodeKey.generate() for _ in range(2)]
    paths = [write_pub(tmp_path / f"n{i}.pub", k) for i, k in enumerate(keys)]
    assert load_public_keys(paths) == {k.public_key for k in keys}
    assert load_public_keys(str(paths[0])) == {keys[0].public_key}


def test_load_public_keys_from_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"no \*\.pub files"):
        load_public_keys(tmp_path)


def test_load_public_keys_names_a_bad_file(tmp_path, key):
    write_pub(tmp_path / "good.pub", key)
    bad = tmp_path / "bad.pub"
    bad.write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="not a PEM public key") as info:
        load_public_keys(tmp_path)
    assert str(bad) in str(info.value)


def test_load_public_keys_refuses_a_non_ed25519_key(tmp_path):
    path = tmp_path / "ec.pub"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ConfigError, match="does not hold an Ed25519 key"):
        load_public_keys(path)


def test_load_public_keys_missing_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_public_keys([tmp_path / "nope.pub"])
