"""What syncd says when binary KMIP fails, provoked against the real PyKMIP server.

Each case asserts the error type (KMSUnavailableError: worth retrying; KMSRefusedError: a
person must act) and the one-line message: the KMS, the operation, the object, the cause;
nothing of PyKMIP's internals.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

from syncd.errors import KMSError, KMSRefusedError, KMSUnavailableError
from syncd.kms import open_key_manager
from syncd.kms.kmip.binary import BinaryTransport
from syncd.kms.kmip.manager import KmipKeyManager
from tests.kmip.conftest import KmipConfigFactory
from tests.kmip.relay import Relay
from tests.kmip.server import PyKmipServer

BITS = 2048


def _open(config: Any) -> KmipKeyManager:
    manager = open_key_manager(config, cast(Any, None))
    assert isinstance(manager, KmipKeyManager)
    return manager


def _label() -> str:
    return f"err-{uuid.uuid4().hex[:10]}"


def _failure(call: Callable[[], object]) -> KMSError:
    with pytest.raises(KMSError) as caught:
        call()
    return caught.value


def _assert_one_line(error: KMSError, port: int, operation: str, cause: str) -> None:
    message = str(error)
    assert "\n" not in message and len(message) < 400, message
    prefix = f"KMIP server 127.0.0.1:{port}: {operation}: "
    assert message.startswith(prefix), message
    assert re.search(cause, message[len(prefix) :]), message
    for internal in (
        "Traceback",
        "kmip.core",
        "kmip.pie",
        "kmip.services",
        "KmipOperation",
        "_ssl.c",
    ):
        assert internal not in message, message


@pytest.fixture
def owned_key(kmip_config: KmipConfigFactory) -> Iterator[str]:
    """A key pair made by the accepted client; yields its private key id."""
    manager = _open(kmip_config())
    ref = manager.create_key_pair(_label(), BITS)
    yield ref.private_key_id
    manager.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- cannot reach the KMS: unavailable (retried by the pipeline) ------------------------------


def test_wrong_port_is_unavailable(kmip_config: KmipConfigFactory) -> None:
    port = _free_port()
    manager = _open(kmip_config(port=port))
    error = _failure(lambda: manager.locate("alice"))
    assert isinstance(error, KMSUnavailableError)
    _assert_one_line(error, port, "Locate 'alice'", "^connection refused$")


def test_a_server_that_never_answers_times_out(
    pykmip_server: PyKmipServer, kmip_config: KmipConfigFactory
) -> None:
    relay = Relay(pykmip_server.host, pykmip_server.port)
    relay.silent = True
    try:
        manager = _open(kmip_config(port=relay.port, timeout=1))
        started = time.monotonic()
        error = _failure(lambda: manager.sign("7", b"data", "sha256"))
        assert time.monotonic() - started < 5
    finally:
        relay.close()
    assert isinstance(error, KMSUnavailableError)
    _assert_one_line(error, relay.port, "Sign with key 7", "^no answer within 1 s$")


def test_dropped_sessions_are_unavailable_then_reconnected(
    pykmip_server: PyKmipServer, kmip_config: KmipConfigFactory
) -> None:
    relay = Relay(pykmip_server.host, pykmip_server.port)
    manager = _open(kmip_config(port=relay.port))
    transport = manager.transport
    assert isinstance(transport, BinaryTransport)
    try:
        ref = manager.create_key_pair(_label(), BITS)
        assert transport.pool.opened == 1
        # The KMS (or a firewall) closed the idle session: the next call reconnects unseen.
        relay.cut()
        time.sleep(0.1)
        manager.sign(ref.private_key_id, b"data", "sha256")
        assert transport.pool.opened == 2
        # The session dies while a request is in flight: unavailable, worth retrying.
        relay.cut()
        relay.drop_requests = True
        error = _failure(lambda: manager.sign(ref.private_key_id, b"data", "sha256"))
        assert isinstance(error, KMSUnavailableError)
        _assert_one_line(
            error, relay.port, f"Sign with key {ref.private_key_id}", "closed the connection"
        )
        # ... and the retry, once the KMS is back, succeeds on a new connection.
        relay.drop_requests = False
        assert manager.sign(ref.private_key_id, b"data", "sha256")
    finally:
        manager.close()
        relay.close()


# --- the KMS refuses: refused (permanent, a person must act) ----------------------------------


def test_server_certificate_from_another_ca_is_refused(
    pykmip_server: PyKmipServer, kmip_config: KmipConfigFactory
) -> None:
    manager = _open(kmip_config(ca_file=str(pykmip_server.other_ca)))
    error = _failure(lambda: manager.create_key_pair("alice", BITS))
    assert isinstance(error, KMSRefusedError)
    _assert_one_line(
        error,
        pykmip_server.port,
        "CreateKeyPair RSA-2048 'alice'",
        r"^TLS: server certificate not trusted \(.*certificate.*; check kms.kmip.ca_file",
    )


def test_server_certificate_for_another_name_is_refused(
    pykmip_server: PyKmipServer, kmip_config: KmipConfigFactory
) -> None:
    """The server's certificate names 127.0.0.1 and localhost; reached as 127.0.0.2 (through
    a relay: the whole loopback network is local) it is the wrong server. PyKMIP's own TLS
    set-up would accept it (it checks the chain only)."""
    relay = Relay(pykmip_server.host, pykmip_server.port, listen_host="127.0.0.2")
    try:
        manager = _open(kmip_config(host="127.0.0.2", port=relay.port))
        error = _failure(lambda: manager.locate("alice"))
    finally:
        relay.close()
    assert isinstance(error, KMSRefusedError)
    message = str(error)
    assert message.startswith(f"KMIP server 127.0.0.2:{relay.port}: Locate 'alice': "), message
    assert "TLS: server certificate not trusted (" in message
    assert "127.0.0.2" in message.split("(", 1)[1]


def test_client_certificate_the_server_refuses(
    pykmip_server: PyKmipServer, kmip_config: KmipConfigFactory
) -> None:
    manager = _open(kmip_config(files=pykmip_server.stranger))
    error = _failure(lambda: manager.locate("alice"))
    assert isinstance(error, KMSRefusedError)
    _assert_one_line(
        error,
        pykmip_server.port,
        "Locate 'alice'",
        r"^TLS: the server refused the client certificate \(.*alert.*\)$",
    )


@pytest.mark.parametrize("operation", ["sign", "public_key", "revoke", "wrap"])
def test_permission_denied_on_another_administrators_key(
    pykmip_server: PyKmipServer, kmip_config: KmipConfigFactory, owned_key: str, operation: str
) -> None:
    """PyKMIP lets a client use only the objects it created: the colleague, a trusted client,
    is refused the key the first client made (the guide's access rights, as PyKMIP has them)."""
    colleague = _open(kmip_config(files=pykmip_server.colleague, server_side_wrap="never"))
    calls: dict[str, tuple[str, Callable[[], object]]] = {
        "sign": (f"Sign with key {owned_key}", lambda: colleague.sign(owned_key, b"x", "sha256")),
        "public_key": (f"Get public key {owned_key}", lambda: colleague.public_key(owned_key)),
        "revoke": (f"Revoke key {owned_key}", lambda: colleague.revoke(owned_key, "test")),
        "wrap": (
            f"Get private key {owned_key}",
            lambda: colleague.wrapped_private_key(owned_key, "pkcs1"),
        ),
    }
    described, call = calls[operation]
    try:
        error = _failure(call)
    finally:
        colleague.close()
    assert isinstance(error, KMSRefusedError)
    _assert_one_line(error, pykmip_server.port, described, "^permission denied")


def test_colleague_does_not_see_the_keys_of_others(
    pykmip_server: PyKmipServer, kmip_config: KmipConfigFactory
) -> None:
    label = _label()
    owner = _open(kmip_config())
    colleague = _open(kmip_config(files=pykmip_server.colleague))
    try:
        owner.create_key_pair(label, BITS)
        assert colleague.locate(label) == []
        assert len(owner.locate(label)) == 1
    finally:
        owner.close()
        colleague.close()


@pytest.mark.parametrize("operation", ["sign", "public_key", "revoke", "wrap"])
def test_unknown_key_id_is_refused_as_not_found(
    pykmip_server: PyKmipServer, kmip_config: KmipConfigFactory, operation: str
) -> None:
    manager = _open(kmip_config(server_side_wrap="never"))
    calls: dict[str, tuple[str, Callable[[], object]]] = {
        "sign": ("Sign with key 987654", lambda: manager.sign("987654", b"x", "sha256")),
        "public_key": ("Get public key 987654", lambda: manager.public_key("987654")),
        "revoke": ("Revoke key 987654", lambda: manager.revoke("987654", "test")),
        "wrap": ("Get private key 987654", lambda: manager.wrapped_private_key("987654", "pkcs1")),
    }
    described, call = calls[operation]
    try:
        error = _failure(call)
    finally:
        manager.close()
    assert isinstance(error, KMSRefusedError)
    _assert_one_line(error, pykmip_server.port, described, "^not found")


def test_signing_with_a_revoked_key_is_refused_as_not_active(
    pykmip_server: PyKmipServer, kmip_config: KmipConfigFactory, owned_key: str
) -> None:
    manager = _open(kmip_config())
    try:
        manager.revoke(owned_key, "test")
        error = _failure(lambda: manager.sign(owned_key, b"x", "sha256"))
    finally:
        manager.close()
    assert isinstance(error, KMSRefusedError)
    _assert_one_line(error, pykmip_server.port, f"Sign with key {owned_key}", "^key not active")
