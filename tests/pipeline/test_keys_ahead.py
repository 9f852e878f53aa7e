"""A first provisioning's key pair is generated while check_existing waits on Google
(syncd.kms.ahead); that a user held by check_existing gets no KMS key is in test_adopt."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import syncd.kms.local as local
from syncd.app.passes import sync_pass

from .conftest import Deployment, sandbox_users


@pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)
def test_first_provisioning_keys_are_generated_ahead(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    def inline_generation(bits: int) -> rsa.RSAPrivateKey:
        raise AssertionError("create_key_pair generated the key itself")

    # create_key_pair generates a key itself only when none was started ahead.
    monkeypatch.setattr(local, "generate_rsa", inline_generation)
    emails = sandbox_users(3)
    deployment.set_users(emails)
    app = deployment.app()
    result = sync_pass(app)
    app.database.close()
    assert not result.failures, result.failures
    assert {r.email for r in result.results if r.ok} == set(emails)
    assert deployment.kms_key_count() == 3 + 1  # the users' and the issuer's
