"""JsonTransport through the JSON-to-binary bridge to the real PyKMIP server.

Every KmipTransport operation is posted as Cosmian JSON TTLV over HTTPS (token checked), the
bridge forwards it to PyKMIP with PyKMIP's own client, and the result is judged independently:
signatures verified with cryptography on the public key the server returns, private keys read
by ``openssl rsa -inform DER``, the server's own view read back with PyKMIP's client.

PyKMIP has neither AES-GCM key wrapping nor Certify: the bridge answers those as a Cosmian
release without them would, and the tests check that the transport reports
NotSupportedByServer; the message shapes of those paths are pinned by test_json_ttlv.py's
fixtures.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from syncd.errors import ConfigError, KMSRefusedError, KMSUnavailableError
from syncd.kms.kmip import json_codec as jc
from syncd.kms.kmip.json_transport import JsonTransport, error_for
from syncd.kms.kmip.transport import CertifyRequest, NotSupportedByServer
from tests.kmip.bridge_fixtures import TOKEN, json_config
from tests.kmip.bridge_fixtures import cosmian_bridge as cosmian_bridge
from tests.kmip.bridge_fixtures import json_transport as json_transport
from tests.kmip.bridge_fixtures import pykmip_for_json as pykmip_for_json
from tests.kmip.json_bridge import JsonBridge
from tests.kmip.server import PyKmipServer


def _rsa_public(der: bytes) -> rsa.RSAPublicKey:
    key = serialization.load_der_public_key(der)
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def _openssl_modulus(der: bytes, tmp_path: Path) -> int:
    path = tmp_path / "key.der"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(der)
    result = subprocess.run(["openssl", "rsa", "-inform", "DER", "-in", str(path), "-noout",
                             "-modulus"], capture_output=True, text=True, check=True)
    return int(result.stdout.strip().removeprefix("Modulus="), 16)


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_create_sign_and_public_key_verify_independently(json_transport: JsonTransport,
                                                          cosmian_bridge: JsonBridge) -> None:
    pair = json_transport.create_key_pair("syncd:alice@example.com:1", 2048)
    assert pair.state == "active" and pair.private_key_id != pair.public_key_id
    public = _rsa_public(json_transport.public_key_der(pair.private_key_id))
    assert public.key_size == 2048
    assert json_transport.public_key_der(pair.public_key_id) == json_transport.public_key_der(
        pair.private_key_id)
    data = b"to-be-signed bytes of a certificate"
    for hash_name, algorithm in (("sha256", hashes.SHA256()), ("sha384", hashes.SHA384())):
        signature = json_transport.sign(pair.private_key_id, data, hash_name)  # type: ignore[arg-type]
        public.verify(signature, data, padding.PKCS1v15(), algorithm)
    # the wire carried Cosmian JSON TTLV with the label as a 5.x tag
    create = jc.loads(next(body for body in cosmian_bridge.requests
                           if b'"CreateKeyPair"' in body))
    common = create.need("CommonAttributes")
    assert common.need("Attribute").need("AttributeValue") == jc.text(
        "AttributeValue", '["syncd:alice@example.com:1"]')


def test_private_key_der_is_read_by_openssl_in_both_formats(json_transport: JsonTransport,
                                                            tmp_path: Path) -> None:
    pair = json_transport.create_key_pair("syncd:bob@example.com:1", 2048)
    public = _rsa_public(json_transport.public_key_der(pair.public_key_id))
    pkcs1 = json_transport.private_key_der(pair.private_key_id, "pkcs1")
    pkcs8 = json_transport.private_key_der(pair.private_key_id, "pkcs8")
    assert _openssl_modulus(pkcs1, tmp_path) == public.public_numbers().n
    assert _openssl_modulus(pkcs8, tmp_path) == public.public_numbers().n
    # PKCS#1 is the bare RSAPrivateKey: openssl's asn1parse sees no AlgorithmIdentifier
    assert pkcs1 != pkcs8 and pkcs8.endswith(pkcs1)


def test_register_then_locate_and_sign_with_the_imported_key(json_transport: JsonTransport) -> None:
    key = rsa.generate_private_key(65537, 2048)
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    pair = json_transport.register_private_key("syncd:issuer:test", pkcs8, spki)
    assert json_transport.public_key_der(pair.private_key_id) == spki
    signature = json_transport.sign(pair.private_key_id, b"tbs", "sha256")
    key.public_key().verify(signature, b"tbs", padding.PKCS1v15(), hashes.SHA256())
    assert [p.private_key_id for p in json_transport.locate("syncd:issuer:test")] == [
        pair.private_key_id]
    assert json_transport.locate("syncd:issuer:test")[0].public_key_id == pair.public_key_id


def test_locate_finds_every_pair_of_a_label_oldest_first_and_not_destroyed(
        json_transport: JsonTransport) -> None:
    label = "syncd:carol@example.com:1"
    first = json_transport.create_key_pair(label, 2048)
    second = json_transport.create_key_pair(label, 2048)
    json_transport.create_key_pair("syncd:someone-else", 2048)
    found = json_transport.locate(label)
    assert found == [first, second]
    json_transport.revoke(first.private_key_id, "renewed")
    json_transport.revoke(first.private_key_id, "renewed")  # idempotent
    assert [p.state for p in json_transport.locate(label)] == ["deactivated", "active"]
    with pytest.raises(KMSRefusedError):
        json_transport.sign(first.private_key_id, b"x", "sha256")
    json_transport.destroy(first.private_key_id)
    json_transport.destroy(first.private_key_id)  # idempotent
    assert json_transport.locate(label) == [second]
    assert json_transport.locate("syncd:nobody") == []


def test_revoke_and_destroy_take_both_halves(json_transport: JsonTransport,
                                            pykmip_for_json: PyKmipServer) -> None:
    pair = json_transport.create_key_pair("syncd:dave@example.com:1", 2048)
    json_transport.revoke(pair.private_key_id, "left the company")
    json_transport.destroy(pair.private_key_id)
    # the server itself (PyKMIP's own client) no longer has either half
    from kmip.pie import exceptions
    from kmip.pie.client import ProxyKmipClient
    client = ProxyKmipClient(hostname=pykmip_for_json.host, port=pykmip_for_json.port,
                             cert=str(pykmip_for_json.client.certificate),
                             key=str(pykmip_for_json.client.key),
                             ca=str(pykmip_for_json.client.ca), config_file="/dev/null")
    with client:
        for uid in (pair.private_key_id, pair.public_key_id):
            with pytest.raises(exceptions.KmipOperationFailure):
                client.get(uid)


def test_server_side_wrapping_not_offered_by_the_bridge_is_not_supported(
        json_transport: JsonTransport, cosmian_bridge: JsonBridge) -> None:
    """PyKMIP cannot wrap with AES-GCM: the bridge answers as a Cosmian without it (422 Not
    Supported). The AES-GCM request shape is pinned by test_json_ttlv.py's fixtures."""
    pair = json_transport.create_key_pair("syncd:erin@example.com:1", 2048)
    with pytest.raises(NotSupportedByServer) as caught:
        json_transport.wrapped_private_key(pair.private_key_id, "pkcs8", "google_cse")
    assert "not supported" in _one_line(caught.value)
    wrapped = json.loads(cosmian_bridge.requests[-1])
    assert "KeyWrappingSpecification" in json.dumps(wrapped) and "GCM" in json.dumps(wrapped)
    # a 5.9+ server wraps PKCS#8 only: PKCS#1 is refused before asking
    with pytest.raises(NotSupportedByServer, match="PKCS#8 only"):
        json_transport.wrapped_private_key(pair.private_key_id, "pkcs1", "google_cse")


def test_certify_not_offered_by_the_bridge_is_not_supported(json_transport: JsonTransport) -> None:
    """PyKMIP has no Certify: the bridge answers 404 "Route not supported" as a release
    without it would. The Certify request shape is pinned by test_json_ttlv.py."""
    pair = json_transport.create_key_pair("syncd:frank@example.com:1", 2048)
    request = CertifyRequest(pair.public_key_id, "issuer-key", None, "CN=frank@example.com",
                             "[v3_ca]\nbasicConstraints=critical,CA:FALSE\n", 30, "syncd:x")
    with pytest.raises(NotSupportedByServer) as caught:
        json_transport.certify(request)
    assert "Certify" in _one_line(caught.value)


def test_a_4x_server_gets_hex_tags_and_has_no_sign(pykmip_for_json: PyKmipServer) -> None:
    bridge = JsonBridge(pykmip_for_json, TOKEN, version="4.24.0 (OpenSSL 3.2.0-non-FIPS)")
    transport = JsonTransport(json_config(bridge, pykmip_for_json))
    try:
        pair = transport.create_key_pair("syncd:old@example.com:1", 2048)
        assert transport.locate("syncd:old@example.com:1") == [pair]
        assert "5B2273796E63643A6F6C64406578616D706C652E636F6D3A31225D" in \
            bridge.requests[0].decode()
        with pytest.raises(NotSupportedByServer, match="no Sign"):
            transport.sign(pair.private_key_id, b"x", "sha256")
        # before 5.9 Cosmian wraps the PKCS#1 form only
        with pytest.raises(NotSupportedByServer, match="PKCS#1 only, not PKCS#8"):
            transport.wrapped_private_key(pair.private_key_id, "pkcs8", "google_cse")
        with pytest.raises(NotSupportedByServer, match="AES GCM"):
            transport.wrapped_private_key(pair.private_key_id, "pkcs1", "google_cse")
    finally:
        transport.close()
        bridge.stop()


def test_workers_share_one_transport(json_transport: JsonTransport) -> None:
    pairs = [json_transport.create_key_pair(f"syncd:t{i}", 2048) for i in range(3)]
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            pair = pairs[index % 3]
            public = _rsa_public(json_transport.public_key_der(pair.public_key_id))
            for _ in range(3):
                signature = json_transport.sign(pair.private_key_id, b"tbs", "sha256")
                public.verify(signature, b"tbs", padding.PKCS1v15(), hashes.SHA256())
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# --- errors: one line each, the right type ------------------------------------------------------


def test_wrong_token_is_authentication_refused(cosmian_bridge: JsonBridge,
                                               pykmip_for_json: PyKmipServer) -> None:
    transport = JsonTransport(json_config(cosmian_bridge, pykmip_for_json, token="wrong"))
    with pytest.raises(KMSRefusedError) as caught:
        transport.create_key_pair("syncd:x", 2048)
    line = _one_line(caught.value)
    assert line.startswith(f"Cosmian KMS {cosmian_bridge.url}: CreateKeyPair RSA 2048 for "
                           "syncd:x refused: authentication refused (Access denied: ")
    assert "wrong" not in line and TOKEN not in line
    assert not isinstance(caught.value, KMSUnavailableError)


def test_no_token_is_authentication_refused(cosmian_bridge: JsonBridge,
                                            pykmip_for_json: PyKmipServer) -> None:
    transport = JsonTransport(json_config(cosmian_bridge, pykmip_for_json, token=None))
    with pytest.raises(KMSRefusedError) as caught:
        transport.locate("syncd:x")
    assert "authentication refused (No authentication provided.)" in _one_line(caught.value)


def test_token_from_file_and_environment(cosmian_bridge: JsonBridge,
                                         pykmip_for_json: PyKmipServer, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    by_file = JsonTransport(json_config(cosmian_bridge, pykmip_for_json, token=None,
                                        token_file=token_file))
    assert by_file.locate("syncd:nobody") == []
    monkeypatch.setenv("SYNCD_TEST_KMS_TOKEN", TOKEN)
    by_env = JsonTransport(json_config(cosmian_bridge, pykmip_for_json, token=None,
                                       token_env="SYNCD_TEST_KMS_TOKEN"))
    assert by_env.locate("syncd:nobody") == []


def test_server_certificate_from_another_ca_is_refused(cosmian_bridge: JsonBridge,
                                                       pykmip_for_json: PyKmipServer) -> None:
    transport = JsonTransport(json_config(cosmian_bridge, pykmip_for_json,
                                          ca_file=pykmip_for_json.other_ca))
    with pytest.raises(KMSRefusedError) as caught:
        transport.create_key_pair("syncd:x", 2048)
    line = _one_line(caught.value)
    assert "TLS" in line and "not trusted" in line and "kms.kmip.ca_file" in line
    # verify_tls: false (an explicit choice) accepts it
    lax = JsonTransport(json_config(cosmian_bridge, pykmip_for_json,
                                    ca_file=pykmip_for_json.other_ca, verify_tls=False))
    assert lax.locate("syncd:nobody") == []


def test_unreachable_port_is_unavailable(pykmip_for_json: PyKmipServer,
                                         cosmian_bridge: JsonBridge) -> None:
    from tests.kmip.server import _free_port
    config = json_config(cosmian_bridge, pykmip_for_json, url=f"https://127.0.0.1:{_free_port()}")
    with pytest.raises(KMSUnavailableError) as caught:
        JsonTransport(config).create_key_pair("syncd:x", 2048)
    assert "unreachable (connection refused)" in _one_line(caught.value)


def test_unknown_object_id_is_refused_naming_it(json_transport: JsonTransport) -> None:
    with pytest.raises(KMSRefusedError) as caught:
        json_transport.sign("424242", b"x", "sha256")
    line = _one_line(caught.value)
    assert "Sign with key 424242 refused: not found" in line
    assert line.startswith(f"Cosmian KMS {json_transport.describe().split()[-1]}: ")
    with pytest.raises(KMSRefusedError, match="GetAttributes of key 424242 refused: not found"):
        json_transport.public_key_der("424242")
    with pytest.raises(KMSRefusedError, match="Revoke of key 424242 refused"):
        json_transport.revoke("424242", "x")
    json_transport.destroy("424242")  # already gone: nothing to do


def test_a_colleagues_key_is_refused(pykmip_for_json: PyKmipServer,
                                     json_transport: JsonTransport) -> None:
    """PyKMIP lets a client use only its own objects; Cosmian reports such an object as not
    found, and so does the bridge."""
    pair = json_transport.create_key_pair("syncd:grace@example.com:1", 2048)
    bridge = JsonBridge(pykmip_for_json, TOKEN, client=pykmip_for_json.colleague)
    transport = JsonTransport(json_config(bridge, pykmip_for_json))
    try:
        with pytest.raises(KMSRefusedError) as caught:
            transport.sign(pair.private_key_id, b"x", "sha256")
        assert f"Sign with key {pair.private_key_id} refused" in _one_line(caught.value)
    finally:
        transport.close()
        bridge.stop()


ERRORS = json.loads((Path(__file__).parent / "fixtures" / "cosmian" / "errors.json").read_text())


@pytest.mark.parametrize(("case", "kind", "words"), [
    ("no_authentication", KMSRefusedError, "authentication refused"),
    ("access_denied", KMSRefusedError, "authentication refused"),
    ("object_not_found", KMSRefusedError, "not found"),
    ("revoke_unknown", KMSRefusedError, "not found"),
    ("operation_unknown", NotSupportedByServer, "not supported by this server"),
    ("internal", KMSUnavailableError, "server error HTTP 500"),
])
def test_cosmians_error_answers_map_to_syncd_errors(case: str, kind: type[Exception],
                                                    words: str) -> None:
    answer = ERRORS[case]
    error = error_for("Cosmian KMS https://kms.example.com:9998", "Get", "of key 12",
                      answer["status"], answer["body"] + "\n")
    assert type(error) is kind
    line = _one_line(error)
    assert line.startswith("Cosmian KMS https://kms.example.com:9998: Get of key 12 ")
    assert words in line and answer["body"].split(":")[0] in line


def test_a_server_that_never_answers_times_out_as_unavailable(
        cosmian_bridge: JsonBridge, pykmip_for_json: PyKmipServer) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"https://127.0.0.1:{silent.getsockname()[1]}"
        config = json_config(cosmian_bridge, pykmip_for_json, url=url, timeout=1)
        with pytest.raises(KMSUnavailableError) as caught:
            JsonTransport(config).locate("syncd:x")
    assert "no answer within 1 s" in _one_line(caught.value)


def test_a_token_is_never_sent_in_clear_to_another_host(cosmian_bridge: JsonBridge,
                                                        pykmip_for_json: PyKmipServer) -> None:
    config = json_config(cosmian_bridge, pykmip_for_json, url="http://kms.example.com:9998")
    with pytest.raises(ConfigError, match="kms.kmip.url: a bearer token is never sent"):
        JsonTransport(config)


def test_client_certificate_instead_of_a_token(pykmip_for_json: PyKmipServer) -> None:
    bridge = JsonBridge(pykmip_for_json, None, client_ca=pykmip_for_json.client.ca)
    good = JsonTransport(json_config(
        bridge, pykmip_for_json, token=None,
        client_certificate_file=pykmip_for_json.client.certificate,
        client_key_file=pykmip_for_json.client.key))
    stranger = JsonTransport(json_config(
        bridge, pykmip_for_json, token=None,
        client_certificate_file=pykmip_for_json.stranger.certificate,
        client_key_file=pykmip_for_json.stranger.key))
    try:
        pair = good.create_key_pair("syncd:cert-auth", 2048)
        assert good.locate("syncd:cert-auth") == [pair]
        with pytest.raises(KMSRefusedError) as caught:
            stranger.locate("syncd:cert-auth")
        assert "TLS" in _one_line(caught.value)
        assert not isinstance(caught.value, KMSUnavailableError)
    finally:
        good.close()
        stranger.close()
        bridge.stop()
