"""Crash safety with an external KMS: the SIGKILL sweep of test_crash_safety.py with
``kms.backend: kmip`` against a real PyKMIP server of the test's own, one user per crash point.
The final accounting is done against the KMS itself, listed with PyKMIP's own client (Locate
with no filter, Get Attributes): every user key in it is the key of exactly one key pair
generation in the state store, none made twice for a label, none orphaned, the leavers' revoked;
a key created in the KMS whose id the crash kept from the store was found by its label on
resume. SQLite only: the store's engines are swept with the embedded KMS."""

from __future__ import annotations

import pytest

from tests.kmip.inventory import by_name, held_objects
from tests.kmip.server import PyKmipServer

from .conftest import Deployment
from .test_crash_safety import SWEEP_TIMEOUT, sigkill_sweep


@pytest.mark.timeout(SWEEP_TIMEOUT)
def test_sigkill_sweep_with_an_external_kms(
    kmip_deployment: Deployment, kmip_server: PyKmipServer
) -> None:
    swept = sigkill_sweep(kmip_deployment, users_per_point=1)

    # Everything the server holds (it is this test's own), as PyKMIP's client lists it.
    held = held_objects(kmip_server)
    private_keys = by_name(held, "private_key")
    public_keys = by_name(held, "public_key")
    # syncd names a pair's private key with its label and the public key <label>.pub.
    labels = ["issuer:pipeline", *swept.generations.values()]
    assert {name for obj in held for name in obj.names} == {
        name for label in labels for name in (label, f"{label}.pub")
    }, "objects in the KMS that neither the issuer nor a key pair generation accounts for"
    user_labels = {name for name in private_keys if name.startswith("syncd:")}
    assert user_labels == set(swept.generations.values())
    for label in user_labels:  # never created twice for a label
        assert len(private_keys[label]) == 1, f"{label}: {len(private_keys[label])} private keys"
        assert len(public_keys[f"{label}.pub"]) == 1, f"{label}: public keys"
    # Each one is the key its generation recorded: none orphaned.
    recorded = {private_keys[label][0].uid: label for label in user_labels}
    assert recorded == swept.generations
    assert len(swept.generations) == len(swept.listed)

    states = {label: private_keys[label][0].state for label in user_labels}
    leavers = {f"syncd:{email}:" for email in swept.leaving}
    revoked = {label for label, state in states.items() if state == "deactivated"}
    assert {label for label in revoked if not label.startswith(tuple(leavers))} == set()
    assert len(revoked) == len(swept.leaving), states
    staying = {label: state for label, state in states.items() if label not in revoked}
    assert set(staying.values()) == {"active"}, states
