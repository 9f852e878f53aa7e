"""The small pure decisions of the binary KMIP backend: pairing halves, naming failures."""

from __future__ import annotations

import socket
import ssl

from kmip.core import enums
from kmip.pie.exceptions import KmipOperationFailure

from syncd.errors import KMSRefusedError, KMSUnavailableError
from syncd.kms.kmip.binary_errors import kms_error
from syncd.kms.kmip.pairs import KmipObject, pair_halves
from syncd.kms.kmip.transport import KmipPair, NotSupportedByServer

KMS = "KMIP server kms.example.com:5696"


def test_pairs_follow_creation_order_with_numeric_ids() -> None:
    objects = [
        KmipObject("10", "private_key", "active", 100.0),
        KmipObject("9", "public_key", "pre_active", 100.0),
        KmipObject("2", "private_key", "deactivated", 50.0),
        KmipObject("1", "public_key", "pre_active", 50.0),
    ]
    assert pair_halves(objects) == [
        KmipPair("2", "1", "deactivated"),
        KmipPair("10", "9", "active"),
    ]


def test_destroyed_pairs_are_left_out_without_shifting_the_others() -> None:
    objects = [
        KmipObject("a", "private_key", "destroyed", 1.0),
        KmipObject("b", "public_key", "destroyed", 1.0),
        KmipObject("c", "private_key", "active", 2.0),
        KmipObject("d", "public_key", "active", 2.0),
    ]
    assert pair_halves(objects) == [KmipPair("c", "d", "active")]


def test_a_public_key_left_by_an_interrupted_import_is_passed_over() -> None:
    objects = [
        KmipObject("5", "public_key", "pre_active", 10.0),  # the import stopped here
        KmipObject("8", "public_key", "pre_active", 70.0),
        KmipObject("9", "private_key", "active", 70.0),
    ]
    assert pair_halves(objects) == [KmipPair("9", "8", "active")]


def test_pairs_made_in_the_same_second_pair_by_id() -> None:
    objects = [
        KmipObject(uid, kind, "active", 5.0)
        for uid, kind in [
            ("1", "public_key"),
            ("2", "private_key"),
            ("3", "public_key"),
            ("4", "private_key"),
        ]
    ]
    assert pair_halves(objects) == [KmipPair("2", "1"), KmipPair("4", "3")]


def test_opaque_ids_made_together_pair_in_order() -> None:
    objects = [
        KmipObject("b-priv", "private_key", "active", 5.0),
        KmipObject("y-pub", "public_key", "active", 5.0),
        KmipObject("a-priv", "private_key", "active", 9.0),
        KmipObject("z-pub", "public_key", "active", 9.0),
    ]
    assert pair_halves(objects) == [KmipPair("b-priv", "y-pub"), KmipPair("a-priv", "z-pub")]


def _failure(reason: enums.ResultReason, message: str) -> KmipOperationFailure:
    return KmipOperationFailure(enums.ResultStatus.OPERATION_FAILED, reason, message)


def test_refusals_name_the_kms_operation_object_and_cause() -> None:
    error = kms_error(
        KMS, "Sign with key 7", _failure(enums.ResultReason.PERMISSION_DENIED, "no\naccess"), 30
    )
    assert type(error) is KMSRefusedError
    assert str(error) == f"{KMS}: Sign with key 7: permission denied (no access)"


def test_unsupported_operations_are_marked_so_the_manager_can_choose_another_way() -> None:
    for reason in (
        enums.ResultReason.OPERATION_NOT_SUPPORTED,
        enums.ResultReason.KEY_FORMAT_TYPE_NOT_SUPPORTED,
    ):
        error = kms_error(KMS, "Sign with key 7", _failure(reason, ""), 30)
        assert isinstance(error, NotSupportedByServer)


def test_network_failures_are_unavailable() -> None:
    cases = {
        "cannot resolve the host name": socket.gaierror(-2, "Name or service not known"),
        "no answer within 2.5 s": TimeoutError("timed out"),
        "the server closed the connection": EOFError("No data read from socket"),
        "network is unreachable": OSError(101, "Network is unreachable"),
    }
    for cause, raised in cases.items():
        error = kms_error(KMS, "Locate 'x'", raised, 2.5)
        assert type(error) is KMSUnavailableError
        assert cause in str(error).lower()


def test_tls_eof_during_a_call_is_unavailable_not_refused() -> None:
    error = kms_error(KMS, "Locate 'x'", ssl.SSLEOFError(8, "EOF occurred"), 30)
    assert type(error) is KMSUnavailableError
