"""The KMIP key manager over binary KMIP, against a real PyKMIP server.

Every result is judged by something other than syncd: signatures by cryptography's own
verification over the public key DER the server returned and by ``openssl``; kaclsData by
decrypting it with the KACLS key and reading the plaintext with ``openssl rsa -inform DER``,
compared with the public key the server holds.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kmip.core import enums
from kmip.pie import objects as pie_objects
from kmip.pie.client import ProxyKmipClient

from syncd.config import CertificateConfig
from syncd.credentials.credential import certify
from syncd.credentials.issuers import IssuingCA
from syncd.errors import ConfigError, KMSError, KMSRefusedError
from syncd.kms import open_key_manager
from syncd.kms.kacls import unwrap_private_key
from syncd.kms.kmip.binary import BinaryTransport
from syncd.kms.kmip.manager import KmipKeyManager
from syncd.kms.kmip.transport import NotSupportedByServer
from syncd.pki.profile import LeafProfile
from tests.conftest import kacls_view
from tests.kmip.conftest import KmipConfigFactory
from tests.kmip.server import PyKmipServer
from tests.support.testca import make_test_hierarchy

BITS = 2048


def _label() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def _open(config: Any) -> KmipKeyManager:
    manager = open_key_manager(config, cast(Any, None))
    assert isinstance(manager, KmipKeyManager)
    return manager


@pytest.fixture
def manager(kmip_config: KmipConfigFactory) -> Iterator[KmipKeyManager]:
    kms = _open(kmip_config())
    yield kms
    kms.close()


def _server_public_key(kmip_config: KmipConfigFactory, key_id: str) -> rsa.RSAPublicKey:
    """The public key as the server holds it, read over a fresh connection (no cache)."""
    transport = BinaryTransport(kmip_config().kms.kmip)
    try:
        key = serialization.load_der_public_key(transport.public_key_der(key_id))
    finally:
        transport.close()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def _openssl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)


# --- key pairs, signatures, certificates -----------------------------------------------------


def _server_names(server: PyKmipServer, uid: str) -> list[str]:
    """The KMIP Name attributes of an object, read with PyKMIP's own client."""
    with _pykmip_client(server) as client:
        _, attributes = client.get_attributes(uid, ["Name"])
    return [str(a.attribute_value.name_value.value) for a in attributes]


def test_create_locate_and_sign_verified_by_cryptography_and_openssl(
    pykmip_server: PyKmipServer,
    manager: KmipKeyManager,
    kmip_config: KmipConfigFactory,
    tmp_path: Path,
) -> None:
    label = _label()
    ref = manager.create_key_pair(label, BITS)
    assert ref.private_key_id != ref.public_key_id
    assert [(r.private_key_id, r.public_key_id, r.state) for r in manager.locate(label)] == [
        (ref.private_key_id, ref.public_key_id, "active")
    ]
    public = _server_public_key(kmip_config, ref.public_key_id)
    assert public.key_size == BITS
    assert _server_names(pykmip_server, ref.private_key_id) == [label]
    assert _server_names(pykmip_server, ref.public_key_id) == [f"{label}.pub"]
    assert _server_public_key(kmip_config, ref.private_key_id).public_numbers() == (
        public.public_numbers()
    )

    data = b"to-be-signed bytes of a certificate"
    signature = manager.sign(ref.private_key_id, data, "sha256")
    public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())  # raises if wrong

    pem = tmp_path / "public.pem"
    pem.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "sig").write_bytes(signature)
    ok = _openssl(
        "dgst", "-sha256", "-verify", str(pem), "-signature", str(tmp_path / "sig"), data=data
    )
    assert ok.returncode == 0, ok.stderr
    bad = _openssl(
        "dgst",
        "-sha256",
        "-verify",
        str(pem),
        "-signature",
        str(tmp_path / "sig"),
        data=data + b"!",
    )
    assert bad.returncode != 0


def test_certificate_signed_by_issuer_key_inside_the_kms_passes_openssl_verify(
    manager: KmipKeyManager, kmip_config: KmipConfigFactory, tmp_path: Path
) -> None:
    hierarchy = make_test_hierarchy()
    issuer_ref = manager.import_private_key(_label(), hierarchy.intermediate_key)
    issuer_public = _server_public_key(kmip_config, issuer_ref.public_key_id)
    assert (
        issuer_public.public_numbers() == hierarchy.intermediate_key.public_key().public_numbers()
    )
    issuer = IssuingCA(
        "kmip", hierarchy.intermediate_cert, [hierarchy.root_cert], issuer_ref.private_key_id
    )
    email = "alice@example.com"
    user = manager.create_key_pair(email, BITS)
    leaf, _ = certify(
        email,
        user,
        manager,
        issuer,
        LeafProfile.from_config(CertificateConfig()),
        dt.datetime.now(dt.UTC),
    )
    leaf.verify_directly_issued_by(hierarchy.intermediate_cert)
    leaf_public = leaf.public_key()
    assert isinstance(leaf_public, rsa.RSAPublicKey)
    assert leaf_public.public_numbers() == (
        _server_public_key(kmip_config, user.public_key_id).public_numbers()
    )

    def write(name: str, cert: x509.Certificate) -> str:
        (tmp_path / name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return str(tmp_path / name)

    result = _openssl(
        "verify",
        "-purpose",
        "smimesign",
        "-CAfile",
        write("root.pem", hierarchy.root_cert),
        "-untrusted",
        write("issuer.pem", hierarchy.intermediate_cert),
        write("leaf.pem", leaf),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_revoke_then_destroy_idempotent_and_ordered(manager: KmipKeyManager) -> None:
    label = _label()
    ref = manager.create_key_pair(label, BITS)
    with pytest.raises(KMSRefusedError, match="active; revoke it first"):
        manager.destroy(ref.private_key_id)
    manager.revoke(ref.private_key_id, "test")
    manager.revoke(ref.private_key_id, "test again")  # idempotent
    assert [r.state for r in manager.locate(label)] == ["deactivated"]
    with pytest.raises(KMSRefusedError) as refused:
        manager.sign(ref.private_key_id, b"data", "sha256")
    message = str(refused.value)
    assert message.startswith(
        f"KMIP server 127.0.0.1:{manager.transport.describe().split(':')[-1]}: "
    )
    assert f"Sign with key {ref.private_key_id}: key not active" in message
    assert "\n" not in message
    manager.destroy(ref.private_key_id)
    manager.destroy(ref.private_key_id)  # idempotent
    assert manager.locate(label) == []


def test_locate_lists_pairs_oldest_first(
    manager: KmipKeyManager, kmip_config: KmipConfigFactory
) -> None:
    label = _label()
    first = manager.create_key_pair(label, BITS)
    second = manager.create_key_pair(label, BITS)
    manager.revoke(first.private_key_id, "replaced")
    fresh = _open(kmip_config())  # knows nothing of these pairs: pairs them from the server
    try:
        found = fresh.locate(label)
        assert [(r.private_key_id, r.public_key_id, r.state) for r in found] == [
            (first.private_key_id, first.public_key_id, "deactivated"),
            (second.private_key_id, second.public_key_id, "active"),
        ]
        # The public key of each private key, found through the pairing, is the right one.
        for ref in (first, second):
            assert fresh.public_key(ref.private_key_id).public_numbers() == (  # type: ignore[union-attr]
                _server_public_key(kmip_config, ref.public_key_id).public_numbers()
            )
    finally:
        fresh.close()
    assert manager.locate(_label()) == []


# --- kaclsData --------------------------------------------------------------------------------


def _assert_kacls_data_holds(
    kacls_data: str, kacls_key: bytes, key_format: str, server_public: rsa.RSAPublicKey
) -> None:
    """kaclsData unwrapped as the KACLS does and read by openssl: the format asked for, and
    the private key of the public key the server holds."""
    view = kacls_view(kacls_data, kacls_key)
    assert view.is_pkcs1 is (key_format == "pkcs1")
    assert (
        view.public_pem
        == server_public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
    )
    assert unwrap_private_key(kacls_data, kacls_key) == view.der


@pytest.mark.parametrize("key_format", ["pkcs1", "pkcs8"])
def test_kacls_data_client_side_in_the_configured_format(
    kmip_config: KmipConfigFactory, kacls_key: bytes, tmp_path: Path, key_format: str
) -> None:
    manager = _open(kmip_config(server_side_wrap="never"))
    try:
        ref = manager.create_key_pair(_label(), BITS)
        kacls_data = manager.wrapped_private_key(ref.private_key_id, key_format)  # type: ignore[arg-type]
        assert manager.wrapping_mode() == "client"
    finally:
        manager.close()
    _assert_kacls_data_holds(
        kacls_data, kacls_key, key_format, _server_public_key(kmip_config, ref.public_key_id)
    )


def _register_kacls_key_in_pykmip(server: PyKmipServer, kacls_key: bytes) -> str:
    """The KACLS key as an active AES key in PyKMIP (WrapKey usage), as an administrator
    would import it; its id is what kacls.kms_key_id names."""
    with _pykmip_client(server) as client:
        uid = client.register(
            pie_objects.SymmetricKey(
                enums.CryptographicAlgorithm.AES,
                256,
                kacls_key,
                masks=[enums.CryptographicUsageMask.WRAP_KEY, enums.CryptographicUsageMask.ENCRYPT],
                name="google_cse",
            )
        )
        client.activate(uid)
    return str(uid)


def test_server_side_wrap_auto_falls_back_to_client_side_on_pykmip(
    pykmip_server: PyKmipServer, kmip_config: KmipConfigFactory, kacls_key: bytes, tmp_path: Path
) -> None:
    """PyKMIP wraps only with RFC 3394 (NIST key wrap), not AES-GCM as the KACLS needs, and
    returns keys only in the format it stored (PKCS#8): ``auto`` tries the KMS once, then
    wraps in syncd with the KACLS key. The AES-GCM server-side path is covered by the JSON
    transport's Cosmian fixtures."""
    wrapping_key_id = _register_kacls_key_in_pykmip(pykmip_server, kacls_key)
    for key_format in ("pkcs1", "pkcs8"):
        config = kmip_config(server_side_wrap="auto")
        config = config.model_copy(
            update={
                "kacls": config.kacls.model_copy(
                    update={"kms_key_id": wrapping_key_id, "private_key_format": key_format}
                )
            }
        )
        manager = _open(config)
        try:
            assert manager.wrapping_mode() is None
            ref = manager.create_key_pair(_label(), BITS)
            kacls_data = manager.wrapped_private_key(ref.private_key_id, key_format)  # type: ignore[arg-type]
            assert manager.wrapping_mode() == "client"
            _assert_kacls_data_holds(
                kacls_data,
                kacls_key,
                key_format,
                _server_public_key(kmip_config, ref.public_key_id),
            )
        finally:
            manager.close()


def test_server_side_wrap_always_fails_with_one_line_on_pykmip(
    pykmip_server: PyKmipServer, kmip_config: KmipConfigFactory, kacls_key: bytes
) -> None:
    wrapping_key_id = _register_kacls_key_in_pykmip(pykmip_server, kacls_key)
    config = kmip_config(server_side_wrap="always")
    config = config.model_copy(
        update={"kacls": config.kacls.model_copy(update={"kms_key_id": wrapping_key_id})}
    )
    manager = _open(config)
    try:
        ref = manager.create_key_pair(_label(), BITS)
        with pytest.raises(NotSupportedByServer) as refused:
            manager.wrapped_private_key(ref.private_key_id, "pkcs8")
    finally:
        manager.close()
    message = str(refused.value)
    assert isinstance(refused.value, KMSRefusedError)
    assert "\n" not in message
    assert message.startswith(f"KMIP server 127.0.0.1:{pykmip_server.port}: Get private key ")
    assert f"wrapped by {wrapping_key_id}" in message
    assert "kms.kmip.server_side_wrap is always" in message


def test_auto_without_a_kacls_key_names_the_missing_setting(kmip_config: KmipConfigFactory) -> None:
    manager = _open(kmip_config(server_side_wrap="auto", kacls={}))
    try:
        ref = manager.create_key_pair(_label(), BITS)
        with pytest.raises(ConfigError) as missing:
            manager.wrapped_private_key(ref.private_key_id, "pkcs1")
    finally:
        manager.close()
    assert missing.value.where == "kacls.wrapping_key_file"
    assert "cannot wrap" in str(missing.value)


# --- threads ------------------------------------------------------------------------------


def test_threads_share_one_manager_in_parallel(manager: KmipKeyManager) -> None:
    """Four threads creating keys through one manager: every pair distinct and usable, and
    the requests run on several connections at once (the pool does not serialise them)."""
    threads, per_thread = 4, 3
    label = _label()
    with ThreadPoolExecutor(threads) as pool:
        refs = list(
            pool.map(lambda _: manager.create_key_pair(label, BITS), range(threads * per_thread))
        )
    assert len({r.private_key_id for r in refs}) == threads * per_thread
    assert len({r.public_key_id for r in refs}) == threads * per_thread
    transport = manager.transport
    assert isinstance(transport, BinaryTransport)
    assert transport.pool.peak_busy > 1  # requests were in flight together
    assert 1 < transport.pool.opened <= threads  # one connection per thread at most
    assert transport.pool.busy == 0
    found = manager.locate(label)
    assert sorted(r.private_key_id for r in found) == sorted(r.private_key_id for r in refs)
    by_private = {r.private_key_id: r.public_key_id for r in found}
    assert all(by_private[r.private_key_id] == r.public_key_id for r in refs)
    for ref in refs[:3]:
        signature = manager.sign(ref.private_key_id, b"x", "sha256")
        public = manager.public_key(ref.public_key_id)
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, b"x", padding.PKCS1v15(), hashes.SHA256())


def _pykmip_client(server: PyKmipServer) -> ProxyKmipClient:
    return ProxyKmipClient(
        hostname=server.host,
        port=server.port,
        cert=str(server.client.certificate),
        key=str(server.client.key),
        ca=str(server.client.ca),
        config_file="/dev/null",
    )


def test_locate_finishes_a_creation_interrupted_before_activation(
    pykmip_server: PyKmipServer, manager: KmipKeyManager
) -> None:
    """The session dropped between CreateKeyPair and Activate: the pair is pre-active. A
    resumed pass locates it by label and must be able to use it, not make a second one."""
    label = _label()
    with _pykmip_client(pykmip_server) as client:
        public_id, private_id = client.create_key_pair(
            enums.CryptographicAlgorithm.RSA,
            BITS,
            public_name=label,
            public_usage_mask=[enums.CryptographicUsageMask.VERIFY],
            private_name=label,
            private_usage_mask=[enums.CryptographicUsageMask.SIGN],
        )
    found = manager.locate(label)
    assert [(r.private_key_id, r.public_key_id, r.state) for r in found] == [
        (private_id, public_id, "active")
    ]
    signature = manager.sign(private_id, b"resumed", "sha256")
    public = manager.public_key(public_id)
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, b"resumed", padding.PKCS1v15(), hashes.SHA256())


def test_a_revoked_key_is_not_wrapped(kmip_config: KmipConfigFactory) -> None:
    manager = _open(kmip_config(server_side_wrap="never"))
    try:
        ref = manager.create_key_pair(_label(), BITS)
        manager.revoke(ref.private_key_id, "left")
        with pytest.raises(KMSRefusedError) as refused:
            manager.wrapped_private_key(ref.private_key_id, "pkcs1")
    finally:
        manager.close()
    assert str(refused.value).endswith(
        f": Get private key {ref.private_key_id}: key not active (deactivated)"
    )


def test_an_ec_issuer_key_is_refused_in_one_line(manager: KmipKeyManager) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    with pytest.raises(KMSError) as refused:
        manager.import_private_key(_label(), ec.generate_private_key(ec.SECP256R1()))
    assert "RSA issuer keys only" in str(refused.value)
